//! A stream origin as modules/stream.nix runs it: Debian's nginx with
//! libnginx-mod-rtmp, RTMP ingest from loopback only, HLS served over HTTP
//! (with the CORS header the module adds, for hls.js). Stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

pub struct RtmpOrigin {
    pub dir: PathBuf,
    pub rtmp: u16,
    pub http: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RtmpOrigin {
    /// nginx in `dir/origin`, with HLS fragments of `fragment` seconds.
    pub fn start(dir: &Path, fragment: u32) -> RtmpOrigin {
        assert!(
            Path::new(RTMP_MODULE).exists(),
            "{RTMP_MODULE} is missing: apt-get install -y libnginx-mod-rtmp (scripts/install-deps)"
        );
        let (rtmp, http) = (free_port(), free_port());
        let dir = dir.join("origin");
        std::fs::create_dir_all(dir.join("hls")).unwrap();
        // Debian's nginx workers run as www-data: they write the segments.
        for d in [dir.parent().unwrap(), &dir] {
            let _ = Command::new("chmod").arg("0755").arg(d).status();
        }
        let _ = Command::new("chown")
            .args(["www-data"])
            .arg(dir.join("hls"))
            .status();
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "load_module {RTMP_MODULE};\npid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon on;\nevents {{}}\n\
                 rtmp {{ server {{ listen 127.0.0.1:{rtmp}; application live {{ live on; record off; \
                 allow publish 127.0.0.1; deny publish all; deny play all; \
                 hls on; hls_path {d}/hls; hls_fragment {fragment}s; hls_playlist_length 10s; }} }} }}\n\
                 http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; \
                 uwsgi_temp_path {d}; scgi_temp_path {d}; server {{ listen 127.0.0.1:{http}; \
                 location /hls/ {{ alias {d}/hls/; add_header Access-Control-Allow-Origin \"*\" always; \
                 types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }} }} }} }}\n"
            ),
        )
        .unwrap();
        let ok = Command::new("nginx")
            .args(["-c", &format!("{d}/nginx.conf"), "-p", &d.to_string()])
            .status()
            .expect("run nginx");
        assert!(ok.success(), "the origin's nginx did not start");
        RtmpOrigin { dir, rtmp, http }
    }

    /// `rtmp://127.0.0.1:<port>/live`: a room pushes to `<this>/<slug>`.
    pub fn rtmp_url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.rtmp)
    }

    /// The HLS base URL: `<this>/<slug>.m3u8`.
    pub fn hls(&self) -> String {
        format!("http://127.0.0.1:{}/hls", self.http)
    }

    /// The playlist file of `slug` on disk.
    pub fn playlist(&self, slug: &str) -> PathBuf {
        self.dir.join(format!("hls/{slug}.m3u8"))
    }

    /// Waits up to `timeout` for `slug`'s playlist to list `n` segments.
    pub fn wait_segments(&self, slug: &str, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if std::fs::read_to_string(self.playlist(slug))
                .is_ok_and(|p| p.matches(".ts").count() >= n)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for RtmpOrigin {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nginx.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
