//! The status page in a real browser: the daemon runs with `[web]` and two hours of `disk:/`
//! history in its catalog; headless Chromium (Debian's `chromium`) dumps the DOM of `/` and
//! `/check/disk:/` and takes 390-px-wide screenshots (kept in `target/test-artifacts/web/`).
//! The DOM holds every check and job `/api/status` lists, and a chart with one point per
//! minute of history; at 390 px the page does not scroll sideways (measured by the served
//! page saved with a measuring script appended: the page itself has no script, and its
//! Content-Security-Policy would forbid one). Then `[web]` off loopback: check-config refuses
//! it without `password_file`; with one, 401 without credentials, 200 with, and a wrong
//! password costs what a right one does.

mod common;

use base64::Engine as _;
use chrono::{Duration, Utc};
use common::agent::{opsagent, wait_for, Daemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// One request; the whole answer (head and body).
fn get(port: u16, path: &str, auth: Option<&str>) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let auth = auth
        .map(|a| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(a)
            )
        })
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let d = target.join("test-artifacts").join("web");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Headless Chromium at 390 × 800 on `url`: the DOM it built, and a screenshot at `shot`.
fn chromium(url: &str, shot: Option<&Path>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--window-size=390,800",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match shot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(url)
        .output()
        .expect("chromium (scripts/install-test-deps installs it: apt-get install chromium)");
    assert!(
        out.status.success(),
        "chromium {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the page `html` scrolls sideways in a 390-px viewport, and that viewport's width
/// as the page saw it: `html` saved with a script appended that measures the document and
/// paints the verdict (red: wider than the viewport, green: not) and a blue bar as wide as the
/// viewport, read back from Chromium's 390-px screenshot (headless `--dump-dom` lays out at
/// 500 px at least; the screenshot has the asked width).
fn overflows(html: &str, dir: &Path, name: &str) -> (bool, usize) {
    let file = dir.join(format!("{name}.measure.html"));
    let probe = "<script>var d=document.documentElement,o=d.scrollWidth>d.clientWidth,w=d.clientWidth;\
        document.body.innerHTML='<div style=\"position:fixed;left:0;top:0;width:100px;height:40px;background:'+(o?'#ff0000':'#00ff00')+'\"></div>\
        <div style=\"position:fixed;left:0;top:60px;width:'+w+'px;height:20px;background:#0000ff\"></div>';\
        document.body.style.background='#ffffff';</script>";
    std::fs::write(&file, html.replace("</body>", &format!("{probe}</body>"))).unwrap();
    let shot = dir.join(format!("{name}.measure.png"));
    let _ = std::fs::remove_file(&shot);
    chromium(&format!("file://{}", file.display()), Some(&shot));
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let px = |x: usize, y: usize| {
        let i = (y * info.width as usize + x) * ch;
        (buf[i], buf[i + 1], buf[i + 2])
    };
    let verdict = px(20, 20);
    assert!(
        verdict == (255, 0, 0) || verdict == (0, 255, 0),
        "{name}: no verdict painted: {verdict:?}"
    );
    let blue = (0..info.width as usize)
        .filter(|x| px(*x, 70) == (0, 0, 255))
        .count();
    (verdict == (255, 0, 0), blue)
}

fn png_size(p: &Path) -> (u32, u32) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
    let r = dec.read_info().unwrap();
    (r.info().width, r.info().height)
}

fn json(port: u16) -> serde_json::Value {
    if TcpStream::connect(("127.0.0.1", port)).is_err() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(body(&get(port, "/api/status", None))).unwrap_or_default()
}

#[test]
fn chromium_sees_every_check_and_job_and_a_chart_per_minute_of_history_without_scrolling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let port = common::free_port();
    let closed = common::free_port();
    let cfg = dir.path().join("o.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nhostname = \"web-01\"\nstate_dir = \"{d}/state\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"local\"\npath = \"{d}/b\"\n\
             [[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\nport = 1\nschedule = \"30 2 * * *\"\n\
             [[media]]\nname = \"uploads\"\npaths = [\"{d}\"]\nschedule = \"30 3 * * *\"\n\
             [checks]\ninterval = \"1h\"\n\
             [[checks.tcp]]\nname = \"shop\"\naddress = \"127.0.0.1:{closed}\"\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let check = opsagent(&cfg, &["check-config"]);
    assert!(check.status.success(), "{}", common::output_text(&check));
    // Two hours of `disk:/` at one point a minute, before the daemon starts.
    let conf = opsagent::config::load(&cfg).unwrap();
    let cat = opsagent::catalog::Catalog::open(&conf.catalog_path()).unwrap();
    let now = Utc::now();
    let samples: Vec<(&str, chrono::DateTime<Utc>, f64)> = (0..120)
        .map(|m| {
            (
                "disk:/",
                now - Duration::minutes(120 - m),
                60.0 + m as f64 / 8.0,
            )
        })
        .collect();
    cat.add_samples(&samples).unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::start(&cfg, &log);
    wait_for(
        "the first round of checks on /api/status",
        std::time::Duration::from_secs(30),
        || {
            let j = json(port);
            let names: Vec<&str> = j["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            names.contains(&"disk:/") && names.contains(&"shop")
        },
    );
    let status = json(port);
    let art = artifacts();

    // `/`: every check and job of /api/status, escaped; sparklines.
    let url = format!("http://127.0.0.1:{port}/");
    let dom = chromium(&url, None);
    std::fs::write(art.join("index.dom.html"), &dom).unwrap();
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let checks: Vec<String> = status["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert!(checks.len() >= 3, "{status}");
    for c in &checks {
        assert!(
            dom.contains(&format!("data-check=\"{}\"", esc(c))),
            "{c} missing:\n{dom}"
        );
    }
    for j in ["main", "uploads"] {
        assert!(
            dom.contains(&format!("data-job=\"{j}\"")),
            "job {j} missing:\n{dom}"
        );
    }
    assert!(dom.contains("<svg"), "a sparkline:\n{dom}");

    // `/check/disk:/`: the 6-hour chart has one point per minute of history.
    let before = cat
        .history("disk:/", Utc::now() - Duration::hours(6))
        .unwrap()
        .len();
    let page_url = format!("http://127.0.0.1:{port}/check/disk:/");
    let cdom = chromium(&page_url, None);
    let after = cat
        .history("disk:/", Utc::now() - Duration::hours(6))
        .unwrap()
        .len();
    std::fs::write(art.join("check-disk.dom.html"), &cdom).unwrap();
    assert!(before >= 120, "{before}");
    let first_svg = cdom
        .split("<svg")
        .nth(1)
        .expect("an <svg> chart on the check page");
    let n: usize = first_svg
        .split("data-points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&n),
        "{n} points drawn, the history has {before}..{after}"
    );
    let poly = first_svg.split("<polyline").nth(1).unwrap();
    let pts = poly
        .split(" points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(
        pts.split_whitespace().count(),
        n,
        "one polyline vertex per point"
    );
    assert_eq!(cdom.matches("<svg").count(), 3, "6 h, 2 days, 90 days");

    // Screenshots at 390 px, kept; no horizontal scroll at that width.
    for (name, u) in [("index", &url), ("check-disk", &page_url)] {
        let shot = art.join(format!("{name}-390.png"));
        let _ = std::fs::remove_file(&shot);
        chromium(u, Some(&shot));
        assert_eq!(png_size(&shot), (390, 800), "{}", shot.display());
        let served = body(&get(
            port,
            if name == "index" {
                "/"
            } else {
                "/check/disk:/"
            },
            None,
        ))
        .to_string();
        let (over, width) = overflows(&served, &art, name);
        assert_eq!(width, 390, "{name}: the viewport");
        assert!(!over, "{name}: the page scrolls sideways at 390 px");
    }
    // The measure itself works: a page wider than the phone is seen as such.
    let (over, _) = overflows(
        "<html><body><div style=\"width:800px\">x</div></body></html>",
        &art,
        "control",
    );
    assert!(over, "the control page should overflow");

    // Security headers; nothing but GET; /api/status is `status --json`.
    let a = get(port, "/", None);
    for h in [
        "Content-Security-Policy: default-src 'none'",
        "X-Content-Type-Options: nosniff",
        "X-Frame-Options: DENY",
    ] {
        assert!(
            a.contains(h),
            "{h} missing:\n{}",
            &a[..a.find("\r\n\r\n").unwrap()]
        );
    }
    assert!(!a.contains("<script"), "no script on the page");
    let cli = opsagent(&cfg, &["status", "--json"]);
    let cli_json: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&json(port)), names(&cli_json));
    assert_eq!(
        json(port)["jobs"].as_array().unwrap().len(),
        cli_json["jobs"].as_array().unwrap().len()
    );
    assert!(get(port, "/check/nope", None).starts_with("HTTP/1.1 404"));
    // [metrics] on the same address: one socket answers both.
    let m = get(port, "/metrics", None);
    assert!(
        m.starts_with("HTTP/1.1 200") && m.contains("opsagent_check_state{"),
        "{m}"
    );
    // DNS rebinding: another site's name pointed at 127.0.0.1 is not answered.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /api/status HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 421"), "{out}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    daemon.stop();
}

#[test]
fn off_loopback_the_page_needs_a_password_compared_in_constant_time() {
    // Without password_file: check-config exits 2 with a hint.
    let port = common::free_port();
    let (_d, _c, said) =
        common::agent::check_config_fails(&format!("[web]\nlisten = \"0.0.0.0:{port}\"\n"));
    assert!(
        said.contains("web.listen") && said.contains("password_file"),
        "{said}"
    );
    assert!(
        said.contains("127.0.0.1"),
        "the hint names loopback: {said}"
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let pw = dir.path().join("web.pw");
    std::fs::write(&pw, "correct horse battery\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = dir.path().join("o.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"{d}/state\"\n[storage]\ntype = \"local\"\npath = \"{d}/b\"\n\
             [checks]\ninterval = \"1h\"\n\
             [web]\nlisten = \"0.0.0.0:{port}\"\npassword_file = \"{}\"\n",
            pw.display()
        ),
    )
    .unwrap();
    let check = opsagent(&cfg, &["check-config"]);
    assert!(check.status.success(), "{}", common::output_text(&check));
    let daemon = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    wait_for("the page", std::time::Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let no = get(port, "/", None);
    assert!(no.starts_with("HTTP/1.1 401"), "{no}");
    assert!(no.contains("WWW-Authenticate: Basic"), "{no}");
    assert!(
        no.contains("X-Frame-Options: DENY") && no.contains("Content-Security-Policy"),
        "{no}"
    );
    assert!(!no.contains("correct horse"), "{no}");
    assert!(get(port, "/", Some("me:wrong")).starts_with("HTTP/1.1 401"));
    let api = get(port, "/api/status", Some("x:correct horse battery"));
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    let yes = get(port, "/", Some("anyone:correct horse battery"));
    assert!(yes.starts_with("HTTP/1.1 200"), "{yes}");

    // A wrong password costs what a right one does: the same request (a path that is not
    // there: 404 with the password, 401 without), interleaved, medians compared.
    let time = |auth: &str| {
        let t = Instant::now();
        let a = get(port, "/not-here", Some(auth));
        (t.elapsed().as_secs_f64() * 1e6, a)
    };
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let (r, a) = time("u:correct horse battery");
        assert!(a.starts_with("HTTP/1.1 404"), "{a}");
        let (w, b) = time(if i % 2 == 0 {
            "u:correct horse batterz"
        } else {
            "u:x"
        });
        assert!(b.starts_with("HTTP/1.1 401"), "{b}");
        right.push(r);
        wrong.push(w);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (r, w) = (median(&mut right), median(&mut wrong));
    eprintln!("median request: right password {r:.0} µs, wrong {w:.0} µs");
    assert!(
        (r - w).abs() <= (0.25 * r.max(w)).max(150.0),
        "right {r:.0} µs, wrong {w:.0} µs"
    );

    // A client that never finishes its request holds one slot, not the page: with every slot
    // taken the next connection is told 503 at once; once they go, the page answers.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let idle: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t = Instant::now();
    let busy = get(port, "/", Some("u:correct horse battery"));
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    drop(idle);
    wait_for("a free slot", std::time::Duration::from_secs(5), || {
        get(port, "/", Some("u:correct horse battery")).starts_with("HTTP/1.1 200")
    });
    // An endless request head is cut at 8 KiB.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = s.write_all(format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(20_000)).as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    daemon.stop();
}
