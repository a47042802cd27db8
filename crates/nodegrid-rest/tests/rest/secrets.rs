//! No secret in `Debug`, `Display` or errors (issue 17, item 4): the REST client and server
//! types, a handler's view of a request, and auth errors are formatted with a known token and
//! a known private key, and searched for them.

use crate::common::*;
use nodegrid::auth::Auth;
use nodegrid_rest::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use nodegrid_rest::{
    serve, server_tls_config, ClientTls, RestClient, RestReply, RestRequest, RestServer,
};

const SECRET: &str = "s3cr3t-rest-t0ken-55c1";

fn hidden(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows a secret ({s}): {text}");
    }
}

/// A handler that answers with `Debug` of the request it was given.
async fn debug_request(req: RestRequest) -> Result<RestReply, nodegrid_rest::HandlerError> {
    Ok(RestReply::bytes(format!("{req:?}")))
}

#[tokio::test]
async fn rest_types_and_requests_hide_the_token() {
    init_tracing();
    let auth = Auth::shared_token(SECRET);
    let sb = RestServer::builder(auth.clone()).handler("debug", debug_request);
    let server = sb.build().expect("server");
    hidden("RestServer Debug", &format!("{server:?}"), &[SECRET]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = serve(listener, server.router(), None).expect("serve");
    let cb = RestClient::builder(format!("http://{}", handle.local_addr()), auth);
    hidden("RestClientBuilder Debug", &format!("{cb:?}"), &[SECRET]);
    let client = cb.build().expect("client");
    hidden("RestClient Debug", &format!("{client:?}"), &[SECRET]);
    let resp = client.call("debug", &[], "x").await.expect("call");
    hidden("RestResponse Debug", &format!("{resp:?}"), &[SECRET]);
    let body = resp.bytes(1 << 16).await.expect("body");
    let seen = String::from_utf8_lossy(&body);
    assert!(
        seen.contains("\"authorization\": Sensitive"),
        "the handler saw the header: {seen}"
    );
    hidden("RestRequest Debug (in a handler)", &seen, &[SECRET]);

    // A wrong token: the error does not echo what was presented.
    let wrong = format!("{SECRET}-wrong");
    let bad = RestClient::builder(
        format!("http://{}", handle.local_addr()),
        Auth::shared_token(&wrong),
    )
    .build()
    .expect("client");
    let e = bad.call("debug", &[], "x").await.expect_err("refused");
    hidden("RestError", &format!("{e} {e:?}"), &[SECRET]);
}

#[test]
fn rest_tls_types_hide_the_private_key() {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let der = key.serialize_der();
    let pem = key.serialize_pem();
    let secrets: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .chain([der[..32]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()])
        .chain([format!("{:?}", &der[..24])[1..60].to_string()])
        .collect();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let pk = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone()));
    let client_tls = ClientTls::with_client_cert(chain.clone(), chain.clone(), pk()).expect("tls");
    hidden("ClientTls Debug", &format!("{client_tls:?}"), &secrets);
    let server_tls = server_tls_config(chain, pk(), None).expect("server tls");
    hidden("server TLS Debug", &format!("{server_tls:?}"), &secrets);
    let cb = RestClient::builder("https://127.0.0.1:1", Auth::shared_token(SECRET)).tls(client_tls);
    hidden(
        "RestClientBuilder Debug (TLS)",
        &format!("{cb:?}"),
        &secrets,
    );
}
