//! Running a command on a node to completion: stdin in, bounded stdout, the tail of stderr,
//! a timeout that kills.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::{NodeHandle, Process, TransportError};

/// How much of standard error (and of stdout, in failures) is kept.
pub const TAIL: usize = 64 * 1024;

/// Why a command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error(transparent)]
    Spawn(#[from] TransportError),
    /// It ran past its timeout and was killed.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// Its output exceeded the limit.
    #[error("output larger than {0} bytes")]
    OutputTooLarge(u64),
    /// Waiting for it failed.
    #[error("lost the process: {0}")]
    Io(#[from] std::io::Error),
}

/// What a command produced.
#[derive(Debug, Default)]
pub struct Finished {
    /// Exit code, `None` for a signal.
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// The tail of standard error.
    pub stderr: Vec<u8>,
}

/// Read everything, keeping only the last `TAIL` bytes.
pub fn tail(mut r: Box<dyn AsyncRead + Send + Unpin>) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * TAIL {
                        kept.drain(..kept.len() - TAIL);
                    }
                }
            }
        }
        if kept.len() > TAIL {
            kept.drain(..kept.len() - TAIL);
        }
        kept
    })
}

/// Write `bytes` to the process's stdin, then close it.
pub fn feed_stdin(p: &mut Process, bytes: Vec<u8>) -> JoinHandle<()> {
    let stdin = p.stdin.take();
    tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&bytes).await;
            let _ = stdin.shutdown().await;
        }
    })
}

/// Take a process's stdout, leaving an empty reader in its place.
pub fn take_stdout(p: &mut Process) -> Box<dyn AsyncRead + Send + Unpin> {
    std::mem::replace(&mut p.stdout, Box::new(tokio::io::empty()))
}

/// Take a process's stderr, leaving an empty reader in its place.
pub fn take_stderr(p: &mut Process) -> Box<dyn AsyncRead + Send + Unpin> {
    std::mem::replace(&mut p.stderr, Box::new(tokio::io::empty()))
}

/// Run `argv` on `node` with `stdin`, collecting at most `max_output` bytes of stdout.
pub async fn run(
    node: &NodeHandle,
    argv: &[String],
    stdin: Vec<u8>,
    timeout: Duration,
    max_output: u64,
) -> Result<Finished, CommandError> {
    let mut p = node.spawn(argv).await?;
    let writer = feed_stdin(&mut p, stdin);
    let stderr = tail(take_stderr(&mut p));
    let mut stdout = take_stdout(&mut p);
    let work = async {
        let mut out = Vec::new();
        let mut limited = (&mut stdout).take(max_output + 1);
        limited.read_to_end(&mut out).await?;
        if out.len() as u64 > max_output {
            return Err(CommandError::OutputTooLarge(max_output));
        }
        let code = p.wait().await?;
        Ok((code, out))
    };
    let result = tokio::time::timeout(timeout, work).await;
    let (code, out) = match result {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            p.kill().await;
            return Err(e);
        }
        Err(_) => {
            p.kill().await;
            return Err(CommandError::TimedOut(timeout));
        }
    };
    writer.abort();
    Ok(Finished {
        exit_code: code,
        stdout: out,
        stderr: stderr.await.unwrap_or_default(),
    })
}
