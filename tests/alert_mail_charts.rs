//! Alert mails that show: a disk check gone CRIT (an injected value) with two hours of history
//! in the catalog mails a text part, an HTML part with the red band and the threshold sentence,
//! and a PNG chart referenced by `cid:` from the HTML (decoded here, at most 60 KB); its
//! RESOLVED mail is green; a grouped mail has one chart per alert; the digest has the day's
//! charts. The engine runs in-process on simulated time; mails go through the outbox, the real
//! SMTP client and the capture server, and are taken apart here as a mail client would.

mod common;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use common::alert_env::AlertEnv;
use opsagent::catalog::EventRow;

fn env() -> AlertEnv {
    AlertEnv::new("charts", "")
}

/// What these tests add to the shared bench.
trait Env {
    fn event(&self, check: &str, from: &str, to: &str, at: DateTime<Utc>, v: f64);
    fn history(&self, check: &str, until: DateTime<Utc>, top: f64);
}

impl Env for AlertEnv {
    fn event(&self, check: &str, from: &str, to: &str, at: DateTime<Utc>, v: f64) {
        let e = EventRow {
            id: 0,
            check: check.into(),
            from_state: from.into(),
            to_state: to.into(),
            at,
            since: at,
            value: Some(v),
            threshold: Some(90.0),
            detail: String::new(),
            delivered: false,
        };
        self.cat.save_check_round(&[], &[e]).unwrap();
    }

    /// One sample a minute of `check` for the two hours before `until`, rising to `top`.
    fn history(&self, check: &str, until: DateTime<Utc>, top: f64) {
        let samples: Vec<(&str, DateTime<Utc>, f64)> = (0..120)
            .map(|m| {
                let v = top - 25.0 + 25.0 * m as f64 / 119.0;
                (check, until - Duration::minutes(119 - m), v)
            })
            .collect();
        self.cat.add_samples(&samples).unwrap();
    }
}

/// One MIME leaf: its lowercased headers and its decoded body.
#[derive(Debug)]
struct Part {
    headers: String,
    body: Vec<u8>,
}

impl Part {
    fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("text/plain")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn unfold(head: &str) -> String {
    head.replace("\r\n ", " ").replace("\r\n\t", " ")
}

fn decode_qp(s: &str) -> Vec<u8> {
    let s = s.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() + 1 {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..(i + 3).min(s.len())], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Every leaf part of `raw`, depth first (the whole mail's headers are the root's).
fn leaves(raw: &str, out: &mut Vec<Part>) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let head = unfold(head);
    let ct = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .unwrap_or("content-type: text/plain")
        .to_string();
    if ct.to_ascii_lowercase().contains("multipart/") {
        let b = ct
            .split("boundary=")
            .nth(1)
            .unwrap()
            .trim_matches(|c| c == '"' || c == ';' || c == ' ')
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let delim = format!("--{b}");
        for chunk in body.split(&delim).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            leaves(chunk.trim_start_matches("\r\n"), out);
        }
        return;
    }
    let cte = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("content-transfer-encoding:")
        })
        .map(|l| l.split_once(':').unwrap().1.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let body = body.trim_end_matches("\r\n");
    let body = match cte.as_str() {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(body.replace(['\r', '\n'], ""))
            .unwrap(),
        "quoted-printable" => decode_qp(body),
        _ => body.as_bytes().to_vec(),
    };
    out.push(Part {
        headers: head,
        body,
    });
}

/// Keeps the mail's HTML with its images inlined as `data:` URLs in
/// `target/test-artifacts/mail/NAME.html`, and Chromium's 390-px screenshot of it beside it
/// when Chromium is installed: what a phone shows.
fn keep(raw: &str, name: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts").join("mail");
    std::fs::create_dir_all(&dir).unwrap();
    let ps = parts(raw);
    let mut html = ps
        .iter()
        .find(|p| p.content_type().starts_with("text/html"))
        .unwrap()
        .text();
    for p in ps
        .iter()
        .filter(|p| p.content_type().starts_with("image/png"))
    {
        let cid = p.header("content-id").unwrap();
        let cid = cid.trim_start_matches('<').trim_end_matches('>');
        let data = base64::engine::general_purpose::STANDARD.encode(&p.body);
        html = html.replace(
            &format!("cid:{cid}"),
            &format!("data:image/png;base64,{data}"),
        );
    }
    let file = dir.join(format!("{name}.html"));
    std::fs::write(&file, html).unwrap();
    std::fs::write(dir.join(format!("{name}.eml")), raw).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let _ = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--window-size=390,700")
        .arg(format!(
            "--screenshot={}",
            dir.join(format!("{name}-390.png")).display()
        ))
        .arg(format!("file://{}", file.display()))
        .output();
}

fn parts(raw: &str) -> Vec<Part> {
    let mut v = Vec::new();
    leaves(raw, &mut v);
    v
}

/// The HTML part and the PNG parts; every PNG is referenced by `cid:` from the HTML, decodes,
/// and is at most 60 KB.
fn html_and_charts(raw: &str) -> (String, Vec<(u32, u32)>) {
    let ps = parts(raw);
    assert!(
        ps.iter()
            .any(|p| p.content_type().starts_with("text/plain")),
        "no text part:\n{raw}"
    );
    let html = ps
        .iter()
        .find(|p| p.content_type().starts_with("text/html"))
        .expect("an HTML part")
        .text();
    let mut sizes = Vec::new();
    for p in ps
        .iter()
        .filter(|p| p.content_type().starts_with("image/png"))
    {
        let cid = p.header("content-id").expect("the image has a Content-ID");
        let cid = cid.trim_start_matches('<').trim_end_matches('>');
        assert!(
            html.contains(&format!("src=\"cid:{cid}\"")),
            "{cid} not in:\n{html}"
        );
        assert!(p.body.len() <= 60_000, "PNG of {} bytes", p.body.len());
        let dec = png::Decoder::new(std::io::Cursor::new(&p.body));
        let mut r = dec.read_info().expect("the PNG decodes");
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).expect("the PNG's pixels decode");
        sizes.push((r.info().width, r.info().height));
    }
    assert!(raw.len() < 200_000, "a mail of {} bytes", raw.len());
    (html, sizes)
}

#[test]
fn a_crit_disk_mail_shows_a_red_band_the_thresholds_and_a_chart_and_resolved_is_green() {
    let e = env();
    let t0 = Utc::now() - Duration::hours(1);
    e.history("disk:/", t0, 93.4);
    e.event("disk:/", "OK", "CRIT", t0, 93.4);
    assert_eq!(e.tick(t0), None);
    let s = e.tick(t0 + Duration::seconds(30)).unwrap();
    assert_eq!(s, "[opsagent] FIRING CRIT disk / on web-01");
    let m = e.deliver(1);
    let raw = &m[0];
    keep(raw, "firing-crit-disk");
    let (html, charts) = html_and_charts(raw);
    assert!(html.contains("background:#c62828"), "no red band:\n{html}");
    assert!(
        html.contains("disk / 93.4 % — crit above 90 %, warn above 80 %"),
        "no threshold sentence:\n{html}"
    );
    assert_eq!(charts, vec![(600, 180)], "one full-size chart");
    assert!(
        parts(raw)
            .iter()
            .any(|p| p.content_type().starts_with("text/plain")
                && p.text().contains("93.4 (threshold 90)")),
        "the text part is as it was"
    );
    let top = unfold(raw.split("\r\n\r\n").next().unwrap());
    assert!(top.contains("multipart/alternative"), "{top}");
    assert!(raw.contains("multipart/related"), "{raw}");

    // Resolved: a green band.
    e.event("disk:/", "CRIT", "OK", t0 + Duration::minutes(10), 70.0);
    e.tick(t0 + Duration::minutes(11));
    let s = e.tick(t0 + Duration::minutes(16)).unwrap();
    assert_eq!(s, "[opsagent] RESOLVED disk / on web-01");
    let m = e.deliver(2);
    let (html, _) = html_and_charts(&m[1]);
    assert!(
        html.contains("background:#2e7d32"),
        "no green band:\n{html}"
    );
    assert!(!html.contains("background:#c62828"), "{html}");
}

#[test]
fn a_grouped_mail_has_one_small_chart_per_alert_and_stays_small() {
    let e = env();
    let t0 = Utc::now() - Duration::hours(1);
    for (i, name) in ["cpu", "disk:/", "disk:/srv", "memory"].iter().enumerate() {
        e.history(name, t0, if *name == "memory" { 30.0 } else { 95.0 });
        let to = if i % 2 == 0 { "CRIT" } else { "WARN" };
        e.event(name, "OK", to, t0, 95.0);
    }
    // A backup alert has no history: no chart for it.
    e.event("tcp:shop", "OK", "CRIT", t0, 0.0);
    e.tick(t0);
    let s = e.tick(t0 + Duration::seconds(30)).unwrap();
    assert!(s.starts_with("[opsagent] FIRING 5 alerts"), "{s}");
    let m = e.deliver(1);
    keep(&m[0], "grouped");
    let (html, charts) = html_and_charts(&m[0]);
    assert_eq!(charts, vec![(400, 120); 4], "{html}");
    assert!(
        html.contains("background:#f0a000"),
        "an amber band:\n{html}"
    );
    assert!(
        html.contains("cpu 95 % — crit above 90 %, warn above 80 %"),
        "{html}"
    );
    assert!(
        html.contains("memory 95 % — crit below 5 %, warn below 10 %"),
        "{html}"
    );
}

#[test]
fn the_digest_has_the_days_charts() {
    let e = AlertEnv::new("digestcharts", "[alerts]\ndigest = \"* * * * *\"\n");
    // Simulated time a little in the past, so the queued digest is due for the real outbox.
    let now = Utc::now() - Duration::minutes(10);
    e.history("disk:/", now - Duration::minutes(5), 93.4);
    e.event("disk:/", "OK", "CRIT", now - Duration::minutes(30), 93.4);
    let mut d = opsagent::alert::digester::Digester::new(e.cat.clone(), e.cfg.alert_setup());
    let mut sent = None;
    for s in 0..180 {
        if let Some(subject) = d.tick(now + Duration::seconds(s)).unwrap() {
            sent = Some(subject);
            break;
        }
    }
    let subject = sent.expect("a digest within three minutes");
    let m = e.deliver(1);
    let digest = m.iter().find(|r| r.contains(&subject[..20])).unwrap();
    keep(digest, "digest");
    let (html, charts) = html_and_charts(digest);
    assert_eq!(charts, vec![(400, 120)], "{html}");
    assert!(html.contains("last 24 hours"), "{html}");
}
