//! No secret in `Debug`, `Display` or errors (issue 17, item 4): the grid's auth and TLS
//! types are formatted with known secrets and searched for them.

use nodegrid::auth::Auth;
use nodegrid::transport::TlsConfig;
use nodegrid::wire::{ConnectRequest, GridTime};
use nodegrid::Manager;
use std::time::SystemTime;

const SECRET_KEY: &str = "s3cr3t-grid-key-7d2a";
const TOKEN: &str = "s3cr3t-grid-token-91fe";

fn hidden(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows a secret ({s}): {text}");
    }
}

#[tokio::test]
async fn auth_manager_and_handshake_types_hide_secrets() {
    let jwt = Auth::minio_jwt("access-key", SECRET_KEY);
    let shared = Auth::shared_token(TOKEN);
    let all = [SECRET_KEY, TOKEN];
    hidden("Auth Debug (jwt)", &format!("{jwt:?}"), &all);
    hidden("Auth Debug (shared token)", &format!("{shared:?}"), &all);
    let jwt_token = jwt.token();
    let hosts = ["http://127.0.0.1:9101", "http://127.0.0.1:9102"];
    let b = Manager::builder(hosts[0], hosts).auth(shared.clone());
    hidden("ManagerBuilder Debug", &format!("{b:?}"), &all);
    let m = b.build().expect("manager");
    hidden("Manager Debug", &format!("{m:?}"), &all);
    let req = ConnectRequest {
        id: [7; 16],
        host: hosts[1].to_string(),
        time: GridTime::from(SystemTime::now()),
        token: jwt_token.clone(),
    };
    hidden("ConnectRequest Debug", &format!("{req:?}"), &[&jwt_token]);
    // A refused token is not echoed in the error.
    for (auth, presented) in [(&shared, "wrong-but-secret-1"), (&jwt, "wrong.but.secret")] {
        let e = auth.validate(presented).expect_err("refused");
        hidden("AuthError", &format!("{e} {e:?}"), &[presented]);
    }
    let e = jwt
        .check_http(Some(&format!("Bearer {TOKEN}x")), None, SystemTime::now())
        .expect_err("refused");
    hidden("HTTP auth error", &format!("{e} {e:?}"), &all);
}

#[test]
fn tls_config_debug_hides_the_private_key() {
    let dir = std::env::temp_dir().join(format!("nodegrid-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let tls = TlsConfig::from_pem_files(&cert_path, &key_path, None, false).expect("tls");
    let der = key.serialize_der();
    let pem = key.serialize_pem();
    let pem_body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let hex_key = hex::encode(&der);
    let texts = [
        format!("{tls:?}"),
        format!("{:?}", tls.server_config()),
        format!("{:?}", tls.client_config()),
    ];
    for t in &texts {
        hidden("TLS Debug", t, &pem_body);
        hidden("TLS Debug", t, &[&hex_key[..64]]);
        hidden("TLS Debug", t, &[&format!("{:?}", &der[..24])[1..60]]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
