//! Configuration a manager refuses when built (issue 15): empty or unusable credentials, host
//! strings with a path or a trailing `/`, and host lists naming one address twice. Each error
//! names the offending string and says what to write instead.

use nodegrid::auth::Auth;
use nodegrid::transport::MemoryNetwork;
use nodegrid::{ConfigError, CredentialProblem, Manager, SingleSpec, StreamSpec};

const TOKEN: &str = "cluster-token";

/// Builds on an in-memory network (a manager that builds starts dialing: never the real one).
fn build(local: &str, hosts: &[&str], auth: Auth) -> Result<Manager, ConfigError> {
    Manager::builder(local, hosts.iter().copied())
        .auth(auth)
        .dialer(MemoryNetwork::new().dialer(local))
        .build()
}

fn build_err(local: &str, hosts: &[&str], auth: Auth) -> ConfigError {
    build(local, hosts, auth).expect_err("refused")
}

/// The error and its text.
fn check(e: ConfigError, want: ConfigError, text: &str) {
    assert_eq!(e, want);
    assert_eq!(e.to_string(), text);
}

const HOSTS: [&str; 2] = ["http://a:9000", "http://b:9000"];

#[tokio::test]
async fn empty_and_unusable_credentials_are_refused() {
    let cases = [
        (
            Auth::shared_token(""),
            CredentialProblem::EmptyToken,
            "the shared token is empty (Auth::shared_token(\"\")): give every node the same \
             non-empty token",
        ),
        (
            Auth::shared_token("secret\n"),
            CredentialProblem::TokenCharacters,
            "the shared token contains a character other than printable ASCII (such as the \
             newline a token read from a file often ends with), which the HTTP Authorization \
             header cannot carry: use letters, digits and punctuation only",
        ),
        (
            Auth::shared_token("sécret"),
            CredentialProblem::TokenCharacters,
            "the shared token contains a character other than printable ASCII (such as the \
             newline a token read from a file often ends with), which the HTTP Authorization \
             header cannot carry: use letters, digits and punctuation only",
        ),
        (
            Auth::shared_token(" secret"),
            CredentialProblem::TokenWhitespace,
            "the shared token starts or ends with a space or tab, which the HTTP Authorization \
             header does not keep: remove it",
        ),
        (
            Auth::minio_jwt("", "minio-secret"),
            CredentialProblem::EmptyAccessKey,
            "the access key is empty (Auth::minio_jwt(\"\", secret_key)): give every node the \
             cluster's access key",
        ),
        (
            Auth::minio_jwt("minioadmin", ""),
            CredentialProblem::EmptySecretKey,
            "the secret key is empty (Auth::minio_jwt(access_key, \"\")): give every node the \
             cluster's secret key",
        ),
    ];
    for (auth, problem, text) in cases {
        assert_eq!(auth.credential_problem(), Some(problem));
        check(
            build_err(HOSTS[0], &HOSTS, auth),
            ConfigError::Credentials(problem),
            text,
        );
    }
    for ok in [
        Auth::shared_token(TOKEN),
        Auth::shared_token("a token with inner spaces"),
        Auth::minio_jwt("minioadmin", "minio-secret"),
    ] {
        assert_eq!(ok.credential_problem(), None);
        build(HOSTS[0], &HOSTS, ok).unwrap().shutdown();
    }
}

#[tokio::test]
async fn host_strings_with_a_path_or_trailing_slash_are_refused() {
    let auth = || Auth::shared_token(TOKEN);
    check(
        build_err(
            "http://a:9000",
            &["http://a:9000", "http://b:9000/"],
            auth(),
        ),
        ConfigError::HostPath {
            host: "http://b:9000/".into(),
            rest: "/".into(),
            expected: "http://b:9000".into(),
        },
        r#"host string "http://b:9000/" ends with '/': write "http://b:9000""#,
    );
    // The local host too, listed with its slash.
    check(
        build_err(
            "http://a:9000/",
            &["http://a:9000/", "http://b:9000"],
            auth(),
        ),
        ConfigError::HostPath {
            host: "http://a:9000/".into(),
            rest: "/".into(),
            expected: "http://a:9000".into(),
        },
        r#"host string "http://a:9000/" ends with '/': write "http://a:9000""#,
    );
    // Or given only as the local host.
    check(
        build_err("http://a:9000/", &HOSTS, auth()),
        ConfigError::HostPath {
            host: "http://a:9000/".into(),
            rest: "/".into(),
            expected: "http://a:9000".into(),
        },
        r#"host string "http://a:9000/" ends with '/': write "http://a:9000""#,
    );
    check(
        build_err(
            "http://a:9000",
            &["http://a:9000", "http://b:9000/minio/grid/v1"],
            auth(),
        ),
        ConfigError::HostPath {
            host: "http://b:9000/minio/grid/v1".into(),
            rest: "/minio/grid/v1".into(),
            expected: "http://b:9000".into(),
        },
        r#"host string "http://b:9000/minio/grid/v1" has "/minio/grid/v1" after host:port: write "http://b:9000" (the route path is set with ManagerBuilder::route)"#,
    );
    check(
        build_err("http://a:9000", &["http://a:9000", "b:9000"], auth()),
        ConfigError::InvalidHost("b:9000".into()),
        r#"invalid host string "b:9000": expected http://host:port or https://host:port"#,
    );
}

#[tokio::test]
async fn one_address_listed_twice_is_refused() {
    let auth = || Auth::shared_token(TOKEN);
    check(
        build_err("http://a", &["http://a", "http://b", "http://b:80"], auth()),
        ConfigError::SameAddress {
            first: "http://b".into(),
            second: "http://b:80".into(),
            address: "b:80".into(),
        },
        r#"host strings "http://b" and "http://b:80" both name b:80: list the node once, spelled the same way on every node"#,
    );
    check(
        build_err(
            "http://a:1",
            &["http://a:1", "http://Node-B:1", "http://node-b:1"],
            auth(),
        ),
        ConfigError::SameAddress {
            first: "http://Node-B:1".into(),
            second: "http://node-b:1".into(),
            address: "node-b:1".into(),
        },
        r#"host strings "http://Node-B:1" and "http://node-b:1" both name node-b:1: list the node once, spelled the same way on every node"#,
    );
    // https:// hosts (the custom dialer stands in for TLS settings).
    check(
        build_err(
            "https://a:443",
            &["https://a:443", "https://b", "https://b:443"],
            auth(),
        ),
        ConfigError::SameAddress {
            first: "https://b".into(),
            second: "https://b:443".into(),
            address: "b:443".into(),
        },
        r#"host strings "https://b" and "https://b:443" both name b:443: list the node once, spelled the same way on every node"#,
    );
    // The same string twice.
    check(
        build_err(
            "http://a:1",
            &["http://a:1", "http://b:1", "http://b:1"],
            auth(),
        ),
        ConfigError::DuplicateHost("http://b:1".into()),
        "host http://b:1 is listed more than once: list each node once",
    );
    // The local host spelled differently from its entry.
    check(
        build_err("http://a:80", &["http://a", "http://b"], auth()),
        ConfigError::LocalHostSpelling {
            local: "http://a:80".into(),
            listed: "http://a".into(),
        },
        r#"local host "http://a:80" is not in the host list, which spells the same address "http://a": write the local host exactly as it is listed"#,
    );
    check(
        build_err("http://c:1", &["http://a:1", "http://b:1"], auth()),
        ConfigError::LocalHost {
            local: "http://c:1".into(),
            count: 0,
        },
        "local host http://c:1 must appear exactly once in the host list (found 0 times)",
    );
    // Distinct ports are distinct nodes.
    build("http://a", &["http://a", "http://a:81"], auth())
        .unwrap()
        .shutdown();
}

#[tokio::test]
async fn handler_names_are_checked_at_registration() {
    let m = build(HOSTS[0], &HOSTS, Auth::shared_token(TOKEN)).unwrap();
    let h = |_r: nodegrid::handler::Request| async move {
        Ok::<_, nodegrid::RemoteError>(bytes::Bytes::new())
    };
    check(
        m.register_single_with(12, SingleSpec::new().name(""), h)
            .unwrap_err(),
        ConfigError::Handler {
            handler: 12,
            reason: "handler name \"\" is empty or has control characters: give a printable \
                     name, or none"
                .into(),
        },
        "handler 12: handler name \"\" is empty or has control characters: give a printable \
         name, or none",
    );
    m.register_single_with(12, SingleSpec::new().name("kv.get"), h)
        .unwrap();
    // A second registration: the reference's text, with the handler's own name...
    check(
        m.register_single_with(12, SingleSpec::new().name("kv.get"), h)
            .unwrap_err(),
        ConfigError::Handler {
            handler: 12,
            reason: "handler kv.get: mux handler already exists".into(),
        },
        "handler 12: handler kv.get: mux handler already exists",
    );
    // ...or MinIO's name of the ID when it has none.
    check(
        m.register_single(12, h).unwrap_err(),
        ConfigError::Handler {
            handler: 12,
            reason: "handler ReadVersion: mux handler already exists".into(),
        },
        "handler 12: handler ReadVersion: mux handler already exists",
    );
    let stream = |_c: nodegrid::StreamContext,
                  _i: nodegrid::StreamInput,
                  _o: nodegrid::StreamOutput| async move { Ok(()) };
    m.register_stream(13, StreamSpec::new().name("kv.watch").subroute("s"), stream)
        .unwrap();
    check(
        m.register_stream(13, StreamSpec::new().name("kv.watch").subroute("s"), stream)
            .unwrap_err(),
        ConfigError::Handler {
            handler: 13,
            reason: "handler kv.watch, subroute:s: mux handler already exists".into(),
        },
        "handler 13: handler kv.watch, subroute:s: mux handler already exists",
    );
    assert!(matches!(
        m.register_stream(14, StreamSpec::new().name("a\nb"), stream),
        Err(ConfigError::Handler { handler: 14, .. })
    ));
    m.shutdown();
}
