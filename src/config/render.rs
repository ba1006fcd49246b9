//! The effective configuration rendered back as TOML, passwords masked, for `check-config`.

use super::*;

impl Config {
    /// The effective configuration as TOML, passwords masked, for `check-config`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write;
        let _ = writeln!(s, "listen = \"{}\"", self.listen);
        let _ = writeln!(s, "listen_backlog = {}", self.listen_backlog);
        let _ = writeln!(
            s,
            "max_client_connections = {}",
            self.max_client_connections
        );
        let _ = writeln!(s, "max_message_bytes = {}", self.max_message_bytes);
        let _ = writeln!(
            s,
            "max_client_buffer_bytes = {}",
            self.max_client_buffer_bytes
        );
        let _ = writeln!(
            s,
            "startup_timeout_ms = {}",
            self.startup_timeout.as_millis()
        );
        limits::render(&mut s, &self.limits, &self.server_tls);
        let _ = writeln!(
            s,
            "analysis_cache_entries = {}",
            self.analysis_cache_entries
        );
        if let Some(t) = &self.tls {
            let _ = writeln!(s, "tls_cert_file = {:?}", t.cert_file);
            let _ = writeln!(s, "tls_key_file = {:?}", t.key_file);
        }
        let role = |auto: bool| if auto { "\nrole = \"auto\"" } else { "" };
        let _ = writeln!(
            s,
            "\n[primary]\nhost = \"{}\"\nport = {}{}",
            self.primary.host,
            self.primary.port,
            role(self.primary_role_auto)
        );
        for (i, r) in self.replicas.iter().enumerate() {
            let auto = self.replica_role_auto.get(i).copied().unwrap_or(false);
            let _ = writeln!(
                s,
                "\n[[replicas]]\nhost = \"{}\"\nport = {}{}",
                r.host,
                r.port,
                role(auto)
            );
        }
        let h = &self.health;
        let _ = writeln!(
            s,
            "\n[health]\ncheck_timeout_ms = {}\nban_ms = {}\nmax_ban_ms = {}\nretry_reads = {}",
            h.check_timeout.as_millis(),
            h.ban.as_millis(),
            h.max_ban.as_millis(),
            h.retry_reads
        );
        let r = &self.replication;
        let _ = writeln!(
            s,
            "\n[replication]\nlag_poll_ms = {}\nmax_lag_bytes = {}\nmax_lag_ms = {}\nconsistency = \"{}\"\nmax_tracked_tables = {}\nmax_replica_wait_ms = {}",
            r.lag_poll.as_millis(),
            r.max_lag_bytes,
            r.max_lag_ms,
            r.consistency.as_str(),
            r.max_tracked_tables,
            r.max_replica_wait.as_millis()
        );
        let p = &self.pool;
        let _ = writeln!(
            s,
            "\n[pool]\nprimary_size = {}\nreplica_size = {}\nconnect_timeout_ms = {}\nacquire_timeout_ms = {}\nserver_idle_timeout_ms = {}\nserver_lifetime_ms = {}\nmax_prepared_per_server = {}\nquery_timeout_ms = {}\nmin_idle = {}",
            p.primary_size,
            p.replica_size,
            p.connect_timeout.as_millis(),
            p.acquire_timeout.as_millis(),
            p.server_idle_timeout.as_millis(),
            p.server_lifetime.as_millis(),
            p.max_prepared_per_server,
            p.query_timeout.map_or(0, |d| d.as_millis()),
            p.min_idle
        );
        for u in &self.users {
            let auth = match u.auth {
                AuthMethod::ScramSha256 => "scram-sha-256",
                AuthMethod::Md5 => "md5",
            };
            let _ = writeln!(
                s,
                "\n[[users]]\nname = \"{}\"\nauth = \"{auth}\"\nadmin = {}",
                u.name, u.admin
            );
            if u.password.is_some() {
                let _ = writeln!(s, "password = \"********\"");
            }
            if u.scram_verifier.is_some() {
                let _ = writeln!(s, "scram_verifier = \"********\"");
            }
        }
        for d in &self.databases {
            let _ = writeln!(
                s,
                "\n[[databases]]\nname = \"{}\"\nserver_database = \"{}\"",
                d.name, d.server_database
            );
        }
        let c = &self.cache;
        let _ = write!(
            s,
            "\n[cache]\nenabled = {}\nmax_bytes = {}\nmax_entry_bytes = {}\nttl_ms = {}\nshare_across_users = {}\ncoalesce_wait_ms = {}\nreplica_fill_delay_ms = {}\ninvalidation = \"{}\"\nwal_poll_ms = {}\n",
            c.enabled,
            c.max_bytes,
            c.max_entry_bytes,
            c.ttl.as_millis(),
            c.share_across_users,
            c.coalesce_wait.as_millis(),
            c.replica_fill_delay.as_millis(),
            match c.invalidation {
                Invalidation::Proxy => "proxy",
                Invalidation::Wal => "wal",
            },
            c.wal_poll.as_millis(),
        );
        if let Some(u) = &c.wal_user {
            let _ = writeln!(s, "wal_user = \"{u}\"");
        }
        for r in &c.rules {
            let _ = writeln!(s, "[[cache.rules]]");
            match &r.target {
                RuleTarget::Table(t) => {
                    let _ = writeln!(s, "table = \"{t}\"");
                }
                RuleTarget::Fingerprint(f) => {
                    let _ = writeln!(s, "fingerprint = \"{f:016x}\"");
                }
            }
            match r.ttl {
                Some(t) => {
                    let _ = writeln!(s, "ttl_ms = {}", t.as_millis());
                }
                None => {
                    let _ = writeln!(s, "never = true");
                }
            }
        }
        let st = &self.stats.settings;
        let _ = writeln!(
            s,
            "\n[stats]\nlisten = \"{}\"\nenabled = {}\nmax_fingerprints = {}\nslow_query_ms = {}\nlog_parameters = {}",
            self.stats.listen, st.enabled, st.max_fingerprints, st.slow_query_ms, st.log_parameters
        );
        if self.stats.token.is_some() {
            let _ = writeln!(s, "token = \"********\"");
        }
        let t = &st.thresholds;
        let _ = writeln!(
            s,
            "\n[stats.targets]\np90_ms = {}\np95_ms = {}\npool_efficiency = {}\nfast_acquire_ms = {}\nacquire_p95_ms = {}\ncache_hit_rate = {}\nn_plus_one_bursts = {}",
            t.p90_ms, t.p95_ms, t.pool_efficiency, t.fast_acquire_ms, t.acquire_p95_ms, t.cache_hit_rate, t.n_plus_one_bursts
        );
        let n = &self.n_plus_one;
        let _ = writeln!(
            s,
            "\n[n_plus_one]\nenabled = {}\nthreshold = {}\nwindow_ms = {}\nnotify_client = {}\nrepeated_identical = {}\nbatchable_writes = {}\nmax_findings = {}\nmax_traces = {}",
            n.enabled, n.threshold, n.window_ms, n.notify_client, n.repeated_identical, n.batchable_writes, n.max_findings, n.max_traces
        );
        s
    }
}
