//! The only scripts the portal serves: the Watch page's player (hls.js,
//! vendored from npm at an exact version, see portal/assets/README.md) and
//! the few lines that choose between it and the browser's own HLS. Served
//! from the binary itself; no other page refers to them, and every other
//! page's CSP (`default-src 'none'`) would refuse them anyway.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub const HLS_JS_VERSION: &str = "1.7.4";
/// sha256 of `hls.light.min.js` as published in the npm tarball.
pub const HLS_JS_SHA256: &str = "482cccb3a224554f64d8c2cf0d335dba4a3819bdb726afbfddfe15de4c277d82";
pub const HLS_JS: &[u8] = include_bytes!("../../assets/hls.light.min.js");
pub const WATCH_JS: &[u8] = include_bytes!("../../assets/watch.js");

/// The versioned path of hls.js (cached for a year: a new version is a new path).
pub fn hls_js_path() -> String {
    format!("/assets/hls.js-{HLS_JS_VERSION}/hls.light.min.js")
}
pub const WATCH_JS_PATH: &str = "/assets/watch.js";

fn script(body: &'static [u8], cache: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

/// `/assets/hls.js-{version}/hls.light.min.js`.
pub async fn hls_js(Path(version): Path<String>) -> Response {
    if version != format!("hls.js-{HLS_JS_VERSION}") {
        return StatusCode::NOT_FOUND.into_response();
    }
    script(HLS_JS, "public, max-age=31536000, immutable")
}

/// `/assets/watch.js`: small and ours, so revalidated (no version in its path).
pub async fn watch_js() -> Response {
    script(WATCH_JS, "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_vendored_hls_js_is_the_published_one() {
        let got = conference::protocol::hex(&Sha256::digest(HLS_JS));
        assert_eq!(
            got, HLS_JS_SHA256,
            "portal/assets/hls.light.min.js is not hls.js {HLS_JS_VERSION} from npm"
        );
        // The README records the same hash and version.
        let readme = include_str!("../../assets/README.md");
        assert!(readme.contains(HLS_JS_SHA256), "assets/README.md: hash");
        assert!(
            readme.contains(&format!("hls.js@{HLS_JS_VERSION}")),
            "assets/README.md: version"
        );
    }
}
