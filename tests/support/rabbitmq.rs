//! A real RabbitMQ broker on an isolated test node (its own network namespace, so its own
//! epmd), node name `rabbit@localhost`, with the node's own `/etc/rabbitmq`,
//! `/var/lib/rabbitmq` (Mnesia, Erlang cookie) and `/var/log/rabbitmq`; started and stopped
//! through the `systemctl` stand-in.

use super::nodes::Node;

/// A running broker; stopped when dropped.
pub struct Rabbitmq<'n> {
    node: &'n Node,
}

impl<'n> Rabbitmq<'n> {
    /// Configure and start the broker on `node`.
    pub fn start(node: &'n Node) -> Self {
        super::systemctl::install(node);
        std::fs::write(
            node.own("/etc/rabbitmq").join("rabbitmq-env.conf"),
            format!(
                "NODENAME=rabbit@localhost\nNODE_IP_ADDRESS={}\n",
                node.address
            ),
        )
        .unwrap();
        let out = node.sh(
            "head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /var/lib/rabbitmq/.erlang.cookie && \
             chmod 400 /var/lib/rabbitmq/.erlang.cookie && \
             chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq /var/log/rabbitmq && \
             /usr/local/sbin/systemctl start rabbitmq-server",
        );
        assert!(out.status.success(), "rabbitmq did not start: {out:?}");
        Self { node }
    }

    /// `rabbitmqctl -q ARGS` (a shell fragment); its standard output.
    pub fn ctl(&self, args: &str) -> String {
        let out = self.node.sh(&format!("rabbitmqctl -q {args}"));
        assert!(out.status.success(), "rabbitmqctl {args}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Rabbitmq<'_> {
    fn drop(&mut self) {
        let _ = self
            .node
            .sh("/usr/local/sbin/systemctl stop rabbitmq-server");
    }
}
