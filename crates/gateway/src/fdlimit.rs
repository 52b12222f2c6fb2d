//! The open-file limit: every connection a listener may hold is a file descriptor, so the
//! configured limits are only reachable if `RLIMIT_NOFILE` allows them. At start the soft
//! limit is raised to the hard limit when it is below what the configuration needs.

use dohgate_core::config::Config;

/// Descriptors kept aside for everything that is not an inbound connection: listening and
/// upstream sockets (16 pooled UDP sockets per Do53 target, TCP and DoH connections to
/// targets), the admin listener and its clients, the query log, standard streams.
const RESERVE: u64 = 512;

/// Descriptors the configured limits can use at once.
pub fn needed(config: &Config) -> u64 {
    let limits = &config.limits;
    let per_do53 = limits.tcp_connections as u64 + 2;
    let per_doh = limits.doh_connections as u64 + 1;
    config
        .inbound
        .iter()
        .map(|ep| {
            ep.do53.len() as u64 * per_do53
                + (ep.doh.len() + ep.doh_fips.len() + ep.doh_plain.len()) as u64 * per_doh
        })
        .sum::<u64>()
        + RESERVE
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit if it is below [`needed`], and warns if
/// it is still below. Returns the soft limit in force.
pub fn raise(config: &Config) -> Option<u64> {
    let want = needed(config);
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    let mut now = soft;
    if soft < want && soft < hard {
        match rlimit::Resource::NOFILE.set(hard, hard) {
            Ok(()) => {
                now = hard;
                tracing::debug!(from = soft, to = hard, "raised the open-file limit");
            }
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    if now < want {
        tracing::warn!(
            limit = now,
            needed = want,
            "the open-file limit (RLIMIT_NOFILE) is below what limits.tcp_connections and \
             limits.doh_connections allow: connections past it will fail to be accepted; raise \
             it (e.g. LimitNOFILE= in the systemd unit) or lower those limits"
        );
    }
    Some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_listener_at_its_limit() {
        let c = dohgate_core::config::parse(
            "[limits]\ntcp_connections = 100\ndoh_connections = 1000\n[[inbound]]\nname = \"a\"\n\
             listen = [\"127.0.0.1:53\", \"127.0.0.2:53\"]\nlisten_doh = [\"127.0.0.1:443\"]\n\
             listen_doh_plain = [\"127.0.0.1:80\"]\n",
            None,
        )
        .expect("valid");
        assert_eq!(needed(&c), 2 * 102 + 2 * 1001 + RESERVE);
    }
}
