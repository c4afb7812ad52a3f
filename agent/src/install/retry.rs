//! Which install failures are worth another go. The install resumes from
//! what the host is (detect.rs), so trying again after a transient failure
//! (a connection reset as a host goes down, sshd refusing while it boots, a
//! nix copy cut off) redoes only what is missing. A failure that another
//! try cannot mend is [`Final`]: another host key, a host that never
//! answered within the boot wait, an installer that cannot be built.

use std::time::Duration;

use crate::deploy::ssh::ConnectError;

/// A failure that trying again would only repeat.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Final(pub String);

/// Tries of one host's install after its first (each resumes).
pub const RESUMES: u32 = 4;

/// The pause before resume `n` (1-based): 1, 2, 4, 8 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1 << n.saturating_sub(1).min(5))
}

pub fn is_final(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<Final>()
            || c.downcast_ref::<ConnectError>().is_some_and(|c| {
                matches!(
                    c,
                    ConnectError::WrongHostKey { .. } | ConnectError::Unreachable { .. }
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn resets_are_retried_and_a_wrong_key_or_a_dead_host_is_not() {
        let reset: anyhow::Error = Err::<(), _>(anyhow::anyhow!(
            "error: writing to file: Connection reset by peer"
        ))
        .context("copying the system into /mnt")
        .unwrap_err();
        assert!(!is_final(&reset));
        let key = anyhow::Error::new(ConnectError::WrongHostKey {
            host: "h".into(),
            presented: "a".into(),
            pinned: "b".into(),
        })
        .context("after kexec");
        assert!(is_final(&key));
        let gone = anyhow::Error::new(ConnectError::Unreachable {
            host: "h".into(),
            waited: Duration::from_secs(600),
            last: "refused".into(),
        });
        assert!(is_final(&gone));
        assert!(is_final(
            &anyhow::Error::new(Final("no installer".into())).context("build")
        ));
        assert_eq!(
            (1..=RESUMES).map(backoff).collect::<Vec<_>>(),
            [1, 2, 4, 8].map(Duration::from_secs)
        );
    }
}
