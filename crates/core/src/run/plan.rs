//! The plan of a run: the order of the plugins from their before/after declarations, which
//! plugins wait for which, and the scheduler that runs them as soon as they may.

use std::collections::BTreeMap;

use super::RunError;

/// Order `names` so that each plugin runs after those it names in `after` and before those it
/// names in `before` (relations to plugins outside `names` are ignored); otherwise the given
/// order is kept. A cycle is an error that names it.
pub fn plan_order<'a>(
    names: &[String],
    info: impl Fn(&str) -> Option<&'a coffer_sdk::PluginInfo>,
) -> Result<Vec<String>, String> {
    // edges[a] contains b: a must run before b.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in names {
        let Some(i) = info(n) else { continue };
        for a in i.after.iter().filter(|a| names.contains(a)) {
            edges.entry(a.as_str()).or_default().push(n.as_str());
        }
        for b in i.before.iter().filter(|b| names.contains(b)) {
            edges.entry(n.as_str()).or_default().push(b.as_str());
        }
    }
    let mut incoming: BTreeMap<&str, usize> = names.iter().map(|n| (n.as_str(), 0)).collect();
    for targets in edges.values() {
        for t in targets {
            *incoming.get_mut(t).expect("a target is a name") += 1;
        }
    }
    let mut order = Vec::new();
    let mut left: Vec<&str> = names.iter().map(String::as_str).collect();
    while !left.is_empty() {
        let Some(pos) = left.iter().position(|n| incoming[n] == 0) else {
            // Every plugin left waits for another: follow one chain to show the cycle.
            let mut chain = vec![left[0]];
            loop {
                let last = *chain.last().expect("non-empty");
                let next = left
                    .iter()
                    .find(|c| edges.get(*c).is_some_and(|t| t.contains(&last)))
                    .copied()
                    .expect("a waiting plugin waits for one that is left");
                if let Some(i) = chain.iter().position(|c| *c == next) {
                    let mut cycle: Vec<&str> = chain[i..].to_vec();
                    cycle.reverse();
                    cycle.push(cycle[0]);
                    return Err(format!(
                        "the plugins' before/after relations form a cycle: {}",
                        cycle.join(" -> ")
                    ));
                }
                chain.push(next);
            }
        };
        let n = left.remove(pos);
        for t in edges.get(n).into_iter().flatten() {
            *incoming.get_mut(t).expect("a target is a name") -= 1;
        }
        order.push(n.to_string());
    }
    Ok(order)
}

/// For each of `names`, the plugins among `names` that must finish before it starts (its
/// `after`, and those naming it in their `before`).
pub fn plan_waits<'a>(
    names: &[String],
    info: impl Fn(&str) -> Option<&'a coffer_sdk::PluginInfo>,
) -> BTreeMap<String, Vec<String>> {
    let mut waits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in names {
        let Some(i) = info(n) else { continue };
        for a in i.after.iter().filter(|a| names.contains(a)) {
            waits.entry(n.clone()).or_default().push(a.clone());
        }
        for b in i.before.iter().filter(|b| names.contains(b)) {
            waits.entry(b.clone()).or_default().push(n.clone());
        }
    }
    waits
}

/// Run `step` for every plugin of `order` (a plan order) as soon as the plugins it waits for
/// have finished, at most `limit` at once, in plan order when several are ready. After a
/// failure nothing new starts and the running steps finish. Returns the results in plan order
/// and the first failure with its plugin.
pub async fn run_plan<T, Fut>(
    order: &[String],
    waits: &BTreeMap<String, Vec<String>>,
    limit: usize,
    step: impl Fn(String) -> Fut,
) -> (Vec<T>, Option<(String, RunError)>)
where
    Fut: std::future::Future<Output = Result<T, RunError>>,
{
    use futures::StreamExt as _;
    let mut running = futures::stream::FuturesUnordered::new();
    let mut started = vec![false; order.len()];
    let mut finished: Vec<&str> = Vec::new();
    let mut results = Vec::new();
    let mut failure = None;
    loop {
        if failure.is_none() {
            for (i, name) in order.iter().enumerate() {
                if running.len() >= limit.max(1) {
                    break;
                }
                let ready = waits
                    .get(name)
                    .is_none_or(|w| w.iter().all(|d| finished.contains(&d.as_str())));
                if !started[i] && ready {
                    started[i] = true;
                    let work = step(name.clone());
                    running.push(async move { (i, work.await) });
                }
            }
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        finished.push(&order[i]);
        match result {
            Ok(t) => results.push((i, t)),
            Err(e) => {
                failure.get_or_insert((order[i].clone(), e));
            }
        }
    }
    results.sort_by_key(|(i, _)| *i);
    (results.into_iter().map(|(_, t)| t).collect(), failure)
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use coffer_sdk::PluginInfo;

    fn infos() -> Vec<PluginInfo> {
        vec![
            PluginInfo::new("filesystem", "1", ""),
            PluginInfo::new("galera", "1", "").after(&["pacemaker", "filesystem"]),
            PluginInfo::new("pacemaker", "1", "").after(&["filesystem"]),
            PluginInfo::new("redis", "1", "").before(&["filesystem"]),
        ]
    }

    fn order(names: &[&str], infos: &[PluginInfo]) -> Result<Vec<String>, String> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        plan_order(&names, |n| infos.iter().find(|i| i.name == n))
    }

    #[test]
    fn before_and_after_are_honoured_and_the_rest_keeps_its_order() {
        let i = infos();
        assert_eq!(
            order(&["filesystem", "galera", "pacemaker", "redis"], &i).unwrap(),
            ["redis", "filesystem", "pacemaker", "galera"]
        );
        // A relation to a plugin outside the run is ignored.
        assert_eq!(
            order(&["galera", "pacemaker"], &i).unwrap(),
            ["pacemaker", "galera"]
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let mut i = infos();
        i[0] = PluginInfo::new("filesystem", "1", "").after(&["galera"]);
        let e = order(&["filesystem", "galera", "pacemaker"], &i).unwrap_err();
        assert!(
            e.contains("cycle") && e.contains("galera") && e.contains("filesystem"),
            "{e}"
        );
    }

    /// A fake plugin call: records its start and end in `log`, sleeps `ms`, fails when asked.
    async fn fake_call(
        name: String,
        log: &std::sync::Mutex<Vec<String>>,
        running: &std::sync::atomic::AtomicUsize,
        peak: &std::sync::atomic::AtomicUsize,
        fail: &[&str],
    ) -> Result<String, RunError> {
        use std::sync::atomic::Ordering::SeqCst;
        log.lock().unwrap().push(format!("start {name}"));
        let now = running.fetch_add(1, SeqCst) + 1;
        peak.fetch_max(now, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        running.fetch_sub(1, SeqCst);
        log.lock().unwrap().push(format!("end {name}"));
        if fail.contains(&name.as_str()) {
            Err(RunError::Config(format!("{name} failed")))
        } else {
            Ok(name)
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn the_scheduler_waits_for_what_a_plugin_runs_after_and_keeps_the_limit() {
        let i = infos();
        let order = order(&["filesystem", "galera", "pacemaker", "redis"], &i).unwrap();
        let waits = plan_waits(&order, |n| i.iter().find(|x| x.name == n));
        let log = std::sync::Mutex::new(Vec::new());
        let running = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let (done, failure) = run_plan(&order, &waits, 2, |n| {
            fake_call(n, &log, &running, &peak, &[])
        })
        .await;
        assert!(failure.is_none());
        // Results come back in plan order, whatever order they finished in.
        assert_eq!(done, order);
        let log = log.into_inner().unwrap();
        let at = |e: &str| log.iter().position(|l| l == e).unwrap();
        // galera runs after pacemaker and filesystem; pacemaker after filesystem; redis
        // before filesystem.
        assert!(at("end pacemaker") < at("start galera"));
        assert!(at("end filesystem") < at("start pacemaker"));
        assert!(at("end redis") < at("start filesystem"));
        assert!(peak.into_inner() <= 2);
    }

    #[tokio::test]
    async fn unordered_plugins_run_at_once_up_to_the_limit() {
        let order = names(&["a", "b", "c", "d", "e"]);
        let waits = BTreeMap::new();
        for limit in [1, 3] {
            let log = std::sync::Mutex::new(Vec::new());
            let running = std::sync::atomic::AtomicUsize::new(0);
            let peak = std::sync::atomic::AtomicUsize::new(0);
            let (done, failure) = run_plan(&order, &waits, limit, |n| {
                fake_call(n, &log, &running, &peak, &[])
            })
            .await;
            assert!(failure.is_none());
            assert_eq!(done, order);
            assert_eq!(peak.into_inner(), limit, "limit {limit}");
        }
    }

    #[tokio::test]
    async fn after_a_failure_nothing_new_starts_and_the_failure_names_its_plugin() {
        // b waits for a, which fails; c runs beside a and finishes.
        let order = names(&["a", "c", "b"]);
        let waits = BTreeMap::from([("b".to_string(), names(&["a"]))]);
        let log = std::sync::Mutex::new(Vec::new());
        let running = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let (done, failure) = run_plan(&order, &waits, 4, |n| {
            fake_call(n, &log, &running, &peak, &["a"])
        })
        .await;
        let (plugin, e) = failure.expect("a failed");
        assert_eq!(plugin, "a");
        assert!(e.to_string().contains("a failed"));
        assert_eq!(done, names(&["c"]));
        let log = log.into_inner().unwrap();
        assert!(!log.iter().any(|l| l == "start b"), "{log:?}");
    }
}
