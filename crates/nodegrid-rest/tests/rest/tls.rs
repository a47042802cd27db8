//! TLS and mutual TLS with certificates made by rcgen.

use crate::common::*;
use nodegrid_rest::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use nodegrid_rest::{serve, server_tls_config, ClientTls, RestClient, RestError, ServerHandle};
use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair};
use std::time::Duration;

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA");
        Ca { cert, key }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A leaf certificate for `names`, signed by this CA.
    fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

async fn tls_server(ca: &Ca, client_roots: Option<Vec<CertificateDer<'static>>>) -> ServerHandle {
    let (chain, key) = ca.issue(&["127.0.0.1", "localhost"]);
    let config = server_tls_config(chain, key, client_roots).expect("server TLS");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    serve(
        listener,
        server().build().expect("config").router(),
        Some(config),
    )
    .expect("serve")
}

fn tls_client(handle: &ServerHandle, tls: ClientTls) -> RestClient {
    RestClient::builder(
        format!("https://127.0.0.1:{}", handle.local_addr().port()),
        auth(),
    )
    .tls(tls)
    .build()
    .expect("client")
}

async fn sink_call(client: &RestClient) -> Result<(), RestError> {
    let resp = within(
        Duration::from_secs(10),
        "TLS call",
        client.call("sink", &[], "hello"),
    )
    .await?;
    assert_eq!(&resp.bytes(16).await?[..], b"5");
    Ok(())
}

#[tokio::test]
async fn tls_with_the_right_root_works() {
    init_tracing();
    let ca = Ca::new();
    let handle = tls_server(&ca, None).await;
    let client = tls_client(&handle, ClientTls::new([ca.der()]).expect("tls"));
    sink_call(&client).await.expect("TLS call");
    let size = (3 * MIB).to_string();
    let resp = client
        .call("source", &[("size", &size)], ())
        .await
        .expect("source");
    assert_eq!(resp.into_body().drain().await.expect("drain"), 3 * MIB);
}

#[tokio::test]
async fn tls_with_an_unknown_server_certificate_fails_to_dial() {
    init_tracing();
    let ca = Ca::new();
    let other = Ca::new();
    let handle = tls_server(&ca, None).await;
    let client = tls_client(&handle, ClientTls::new([other.der()]).expect("tls"));
    match sink_call(&client).await {
        Err(RestError::Dial { .. }) => {}
        other => panic!("expected a dial error, got {other:?}"),
    }
    assert_eq!(client.stats().failed_dials, 1);
}

#[tokio::test]
async fn mtls_with_a_client_certificate_works() {
    init_tracing();
    let ca = Ca::new();
    let handle = tls_server(&ca, Some(vec![ca.der()])).await;
    let (chain, key) = ca.issue(&["node-b"]);
    let client = tls_client(
        &handle,
        ClientTls::with_client_cert([ca.der()], chain, key).expect("tls"),
    );
    sink_call(&client).await.expect("mTLS call");
}

#[tokio::test]
async fn mtls_without_a_client_certificate_fails() {
    init_tracing();
    let ca = Ca::new();
    let handle = tls_server(&ca, Some(vec![ca.der()])).await;
    let without = tls_client(&handle, ClientTls::new([ca.der()]).expect("tls"));
    let err = sink_call(&without)
        .await
        .expect_err("no client certificate");
    assert!(err.is_network(), "{err:?}");

    // A certificate from another CA is refused too.
    let other = Ca::new();
    let (chain, key) = other.issue(&["intruder"]);
    let wrong = tls_client(
        &handle,
        ClientTls::with_client_cert([ca.der()], chain, key).expect("tls"),
    );
    let err = sink_call(&wrong)
        .await
        .expect_err("untrusted client certificate");
    assert!(err.is_network(), "{err:?}");
}
