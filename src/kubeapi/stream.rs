//! The API's streaming calls over WebSocket, as kubectl makes them: `exec` (channel protocol
//! `v5.channel.k8s.io`: each binary frame starts with its channel, 1 stdout, 2 stderr, 3 the
//! final Status) and `port-forward` (`v4.channel.k8s.io` with one data and one error channel per
//! port, each opened by a frame holding the port number). TLS with the kubeconfig's CA and client
//! certificate (rustls, as ureq uses), the WebSocket by tungstenite.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

/// What the client authenticates with, kept from the kubeconfig for streaming calls.
#[derive(Clone)]
pub struct Tls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// A command's output through `exec`.
#[derive(Debug, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// 0 on success, the command's exit code otherwise (from the final Status).
    pub code: i32,
}

type Ws = tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn connect(server: &str, tls: &Tls, path: &str, protocols: &str, timeout: Duration) -> Result<Ws> {
    let rest = server
        .strip_prefix("https://")
        .ok_or_else(|| anyhow!("{server}: not an https URL"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => authority,
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots.add(c.context("CA certificate")?)?;
    }
    let certs = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("client certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).context("client key")?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)?;
    let name = ServerName::try_from(host.to_string()).context("server name")?;
    let sock = addr
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{addr}: no address"))?;
    let tcp = crate::net::connect(&sock, Duration::from_secs(10))
        .with_context(|| format!("connect {addr}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let stream = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!("wss://{authority}{path}").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse()?);
    let (ws, _) = tungstenite::client(req, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => {
            let body = r
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            anyhow!("{path}: HTTP {}: {}", r.status(), body.trim())
        }
        other => anyhow!("{path}: {other}"),
    })?;
    Ok(ws)
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Run `command` in a pod's container; its output and exit code.
pub fn exec(
    server: &str,
    tls: &Tls,
    ns: &str,
    pod: &str,
    container: &str,
    command: &[&str],
    timeout: Duration,
) -> Result<ExecOutput> {
    let mut q = vec![
        ("container", container),
        ("stdout", "true"),
        ("stderr", "true"),
    ];
    q.extend(command.iter().map(|c| ("command", *c)));
    let path = format!("/api/v1/namespaces/{ns}/pods/{pod}/exec?{}", query(&q));
    let mut ws = connect(
        server,
        tls,
        &path,
        "v5.channel.k8s.io, v4.channel.k8s.io",
        timeout,
    )?;
    let mut out = ExecOutput::default();
    let mut status = None;
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) if !b.is_empty() => match b[0] {
                1 => out.stdout.extend_from_slice(&b[1..]),
                2 => out.stderr.extend_from_slice(&b[1..]),
                3 => status = Some(serde_json::from_slice::<serde_json::Value>(&b[1..])?),
                _ => {}
            },
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => return Err(anyhow!("exec in {ns}/{pod}: {e}")),
        }
    }
    let status = status.with_context(|| format!("exec in {ns}/{pod}: no final status"))?;
    if status["status"] != "Success" {
        let code = status["details"]["causes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str()?.parse().ok());
        match code {
            Some(c) => out.code = c,
            None => bail!(
                "exec in {ns}/{pod}: {}",
                status["message"].as_str().unwrap_or("failed")
            ),
        }
    }
    Ok(out)
}

/// Forward one connection to `port` of a pod: send `request`, return all it answered until
/// the pod's side closed (or `timeout` passed with nothing more).
pub fn port_forward(
    server: &str,
    tls: &Tls,
    ns: &str,
    pod: &str,
    port: u16,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>> {
    let p = port.to_string();
    let path = format!(
        "/api/v1/namespaces/{ns}/pods/{pod}/portforward?{}",
        query(&[("ports", &p)])
    );
    let mut ws = connect(server, tls, &path, "v4.channel.k8s.io", timeout)?;
    let mut frame = vec![0u8];
    frame.extend_from_slice(request);
    ws.send(Message::Binary(frame.into()))?;
    let (mut data, mut errors) = (Vec::new(), Vec::new());
    let (mut data_opened, mut err_opened) = (false, false);
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) if !b.is_empty() => {
                // The first frame of each channel carries the port (2 bytes, little endian).
                let (opened, sink) = match b[0] {
                    0 => (&mut data_opened, &mut data),
                    1 => (&mut err_opened, &mut errors),
                    _ => continue,
                };
                if !*opened {
                    *opened = true;
                    sink.extend_from_slice(b.get(3..).unwrap_or_default());
                } else {
                    sink.extend_from_slice(&b[1..]);
                }
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                break;
            }
            Err(e) => return Err(anyhow!("port-forward to {ns}/{pod}:{port}: {e}")),
        }
    }
    let _ = ws.close(None);
    if data.is_empty() && !errors.is_empty() {
        bail!(
            "port-forward to {ns}/{pod}:{port}: {}",
            String::from_utf8_lossy(&errors).trim()
        );
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_strings_are_escaped() {
        assert_eq!(
            super::query(&[
                ("command", "sh"),
                ("command", "cat /www/index.html"),
                ("x", "a&b")
            ]),
            "command=sh&command=cat%20%2Fwww%2Findex.html&x=a%26b"
        );
    }
}
