//! The open-file limit: every connection a listener may hold is a file descriptor, so the
//! configured limits are only reachable if `RLIMIT_NOFILE` allows them. At start the soft
//! limit is raised to the hard limit when it is below what the configuration needs, and if
//! it still is, the connection caps are lowered to fit: a flood of connections on one listener
//! then fails at its own cap instead of taking the descriptors every other listener (and the
//! upstream sockets) need.

use dohgate_core::config::Config;

/// Descriptors kept aside for everything that is not an inbound connection: listening and
/// upstream sockets (16 pooled UDP sockets per Do53 target, TCP and DoH connections to
/// targets), the admin listener and its clients, the query log, standard streams.
const RESERVE: u64 = 512;

/// How many Do53 listeners (TCP connections each) and DoH listeners (DoH connections each)
/// the configuration has.
fn listeners(config: &Config) -> (u64, u64) {
    config.inbound.iter().fold((0, 0), |(do53, doh), ep| {
        (
            do53 + ep.do53.len() as u64,
            doh + (ep.doh.len() + ep.doh_fips.len() + ep.doh_plain.len()) as u64,
        )
    })
}

/// Descriptors the configured limits can use at once.
pub fn needed(config: &Config) -> u64 {
    let limits = &config.limits;
    let (do53, doh) = listeners(config);
    do53 * (limits.tcp_connections as u64 + 2) + doh * (limits.doh_connections as u64 + 1) + RESERVE
}

/// Lowers `limits.tcp_connections` and `limits.doh_connections` in the same proportion until
/// every listener at its cap still leaves [`RESERVE`] descriptors free under `limit`. Returns
/// true if it lowered them.
pub fn fit(config: &mut Config, limit: u64) -> bool {
    let want = needed(config);
    if want <= limit {
        return false;
    }
    let (do53, doh) = listeners(config);
    let fixed = do53 * 2 + doh + RESERVE;
    let caps = want - fixed;
    let room = limit.saturating_sub(fixed);
    let scale = |n: usize| ((n as u64 * room / caps).max(1)) as usize;
    let limits = &mut config.limits;
    limits.tcp_connections = scale(limits.tcp_connections);
    limits.doh_connections = scale(limits.doh_connections);
    true
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit if it is below [`needed`]; if it is still
/// below, lowers the connection caps to fit ([`fit`]) and warns. Returns the soft limit in
/// force.
pub fn raise(config: &mut Config) -> Option<u64> {
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
    if fit(config, now) {
        tracing::warn!(
            limit = now,
            needed = want,
            tcp_connections = config.limits.tcp_connections,
            doh_connections = config.limits.doh_connections,
            "the open-file limit (RLIMIT_NOFILE) is below what limits.tcp_connections and \
             limits.doh_connections allow: they are lowered to fit, keeping descriptors for \
             upstream sockets and the admin listener; raise the limit (e.g. LimitNOFILE= in the \
             systemd unit) to serve more connections"
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

    #[test]
    fn caps_are_lowered_to_leave_the_reserve_free() {
        let mut c = dohgate_core::config::parse(
            "[limits]\ntcp_connections = 1000\ndoh_connections = 3000\n[[inbound]]\nname = \"a\"\n\
             listen = [\"127.0.0.1:53\"]\nlisten_doh = [\"127.0.0.1:443\"]\n",
            None,
        )
        .expect("valid");
        assert!(!fit(&mut c, 1 << 20), "enough descriptors: nothing changes");
        assert_eq!(c.limits.tcp_connections, 1000);
        // 1,024 descriptors (a common soft limit): 3 for the listeners, 512 in reserve, and
        // 509 shared 1:3 between the two caps.
        assert!(fit(&mut c, 1024));
        assert_eq!(
            (c.limits.tcp_connections, c.limits.doh_connections),
            (127, 381)
        );
        assert!(needed(&c) <= 1024, "{}", needed(&c));
        // Even with no room at all each listener keeps one connection.
        assert!(fit(&mut c, 10));
        assert_eq!((c.limits.tcp_connections, c.limits.doh_connections), (1, 1));
    }
}
