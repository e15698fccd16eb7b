//! An HTTP proxy in front of the S3 server that answers a delete signed with one access key
//! `403 AccessDenied`, as S3 does for a key whose policy allows writes but not deletes (an
//! append-only key); every other request, and deletes signed with another key, go through.
//! One request per connection (the answer says `Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The running proxy.
pub struct DenyProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Deletes it refused.
    pub refused: Arc<AtomicUsize>,
}

impl DenyProxy {
    /// Forwards to `127.0.0.1:upstream`, refusing deletes signed with `denied_key`.
    pub fn start(upstream: u16, denied_key: &str) -> DenyProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let refused = Arc::new(AtomicUsize::new(0));
        let (key, r) = (format!("Credential={denied_key}/"), refused.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (key, r) = (key.clone(), r.clone());
                std::thread::spawn(move || {
                    let _ = serve(s, upstream, &key, &r);
                });
            }
        });
        DenyProxy { port, refused }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The head lines of a request or response (without the blank line), `None` at EOF.
fn head(r: &mut impl BufRead) -> std::io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Rewrites `lines` with `Connection: close` and writes them and `body` to `w`.
fn send(w: &mut impl Write, lines: &[String], body: &[u8]) -> std::io::Result<()> {
    let mut out = String::new();
    for l in lines
        .iter()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
    {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    w.write_all(out.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn serve(
    client: TcpStream,
    upstream: u16,
    key: &str,
    refused: &AtomicUsize,
) -> std::io::Result<()> {
    let mut r = BufReader::new(client.try_clone()?);
    let Some(req) = head(&mut r)? else {
        return Ok(());
    };
    let len: usize = header(&req, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let mut parts = req[0].split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let delete = method == "DELETE" && !path.contains("uploadId=")
        || method == "POST" && path.contains("?delete");
    let mut client = client;
    if delete && header(&req, "authorization").is_some_and(|a| a.contains(key)) {
        refused.fetch_add(1, Ordering::SeqCst);
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        let lines = vec![
            "HTTP/1.1 403 Forbidden".to_string(),
            "Content-Type: application/xml".to_string(),
            format!("Content-Length: {}", xml.len()),
        ];
        return send(&mut client, &lines, xml.as_bytes());
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    send(&mut up, &req, &body)?;
    let mut ur = BufReader::new(up);
    let Some(resp) = head(&mut ur)? else {
        return Ok(());
    };
    let mut rest = Vec::new();
    ur.read_to_end(&mut rest)?;
    send(&mut client, &resp, &rest)
}
