//! Fuzzes the replies of OpenVPN's management interface, as the broker reads
//! them when it ends a revoked client's session: a server on a Unix socket
//! reads the command line and answers with the input, then closes. The
//! answer is the text after the first `SUCCESS:` line, or an error (an
//! `ERROR:` line, a closed connection, an overlong line) that is one line,
//! and the answer is one line too (it is shown in the revocation's report).
//! Notifications (`>INFO:` and the like) are skipped.
//!
//! The input's length modulo 4 picks the command: 1 `kill`, 2 `signal
//! SIGTERM`; 0 `status 3` (the agent's poll of a shared server): the reply
//! read up to `END` is parsed into live sessions, or refused in one line;
//! the sessions printed again (`status_text`) parse to the same sessions,
//! and a parsed common name is never `UNDEF` (a client still in its
//! handshake is no session); 3 the peer of a per-client instance (`state`,
//! then `status`, both answered from the same input): a connected peer
//! needs a `CONNECTED` state and both link byte counts.
#![no_main]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread;

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::openvpn::{CommonName, Management, parse_status, status_text};
use tunnelbroker_fuzz::{assert_one_line, checked};

struct Server {
    path: PathBuf,
    replies: SyncSender<Vec<u8>>,
}

/// One server thread for the whole run, answering one connection per input.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tb-fuzz-mgmt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mgmt.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (replies, inbox) = sync_channel::<Vec<u8>>(0);
        thread::spawn(move || {
            for reply in inbox {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut command = String::new();
                let _ = reader.read_line(&mut command);
                let mut writer = stream;
                let _ = writer.write_all(&reply);
                let _ = writer.shutdown(std::net::Shutdown::Write);
                // Wait for the client to close, so it never meets a reset.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            }
        });
        Server { path, replies }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = server();
    s.replies.send(data.to_vec()).unwrap();
    let mut m = Management::connect(&s.path).expect("connect to the fuzz server");
    match data.len() % 4 {
        0 => {
            let sessions = m.status();
            drop(m);
            if let Some(sessions) = checked("management status", sessions) {
                assert!(sessions.iter().all(|s| s.common_name != "UNDEF"));
                let again = parse_status(&status_text(&sessions))
                    .unwrap_or_else(|e| panic!("printed sessions do not parse: {e}"));
                assert_eq!(again, sessions, "status printed and parsed again differs");
            }
        }
        3 => {
            let peer = m.peer();
            drop(m);
            if let Some(Some(_)) = checked("management peer", peer) {
                let has = |w: &[u8]| data.windows(w.len()).any(|x| x == w);
                assert!(has(b"CONNECTED"), "a peer without a CONNECTED state");
                assert!(
                    has(b"TCP/UDP read bytes") && has(b"TCP/UDP write bytes"),
                    "a peer without its link's byte counts"
                );
            }
        }
        r => {
            let answer = if r == 1 {
                m.kill_client(&CommonName::new("fuzz").unwrap())
            } else {
                m.terminate()
            };
            drop(m);
            if let Some(text) = checked("management", answer) {
                assert_one_line("management answer", format!("ended: {text}"));
                assert!(
                    data.windows(8).any(|w| w == b"SUCCESS:"),
                    "an answer without a SUCCESS line"
                );
            }
        }
    }
});
