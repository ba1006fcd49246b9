//! The web dashboard at `/`: one self-contained page (inline CSS and JS, hand-drawn canvas charts) compiled into the binary.
//!
//! The page holds no data, so it is served without the stats token; its script reads the
//! token from `?token=` (then drops it from the address bar and keeps it in sessionStorage)
//! or asks for it after a 401, and sends it as `Authorization: Bearer` on every fetch.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

/// Everything the page loads comes from this origin: the policy makes "no CDN" a guarantee.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["http://", "https://", "//cdn", "<script src", "<link "] {
            assert!(!PAGE.contains(needle), "dashboard.html contains {needle:?}");
        }
        for id in [
            "chart-qps",
            "chart-latency",
            "chart-cache",
            "queries",
            "nplusone",
            "pools",
            "targets",
        ] {
            assert!(PAGE.contains(&format!("id=\"{id}\"")), "missing #{id}");
        }
    }
}
