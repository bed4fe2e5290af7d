//! Fuzzes the replies of OpenVPN's management interface, as the broker reads
//! them when it ends a revoked client's session: a server on a Unix socket
//! reads the command line and answers with the input, then closes. The
//! answer is the text after the first `SUCCESS:` line, or an error (an
//! `ERROR:` line, a closed connection, an overlong line) that is one line,
//! and the answer is one line too (it is shown in the revocation's report).
//! Notifications (`>INFO:` and the like) are skipped.
#![no_main]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread;

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::openvpn::{CommonName, Management};
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
    // The command does not change how a reply is read; both are used.
    let answer = if data.len().is_multiple_of(2) {
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
});
