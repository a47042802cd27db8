//! The built-in handlers every `nodegrid node` (and the in-process bench cluster) serves at the
//! conventional test handler IDs, so nodes and benches can exercise each other.

use bytes::Bytes;
use nodegrid::handler::Request;
use nodegrid::{
    ConfigError, Manager, RemoteError, StreamContext, StreamInput, StreamOutput, StreamSpec,
};

/// Single 78: echo. Stream 78: echo every input message.
pub const ECHO: u8 = 78;
/// Single 79: the payload text as a remote error. Stream 79: no input; payload `N` sends the
/// N messages "0".."N-1"; payload `N:SIZE` sends N messages of SIZE bytes each.
pub const TEST2: u8 = 79;
/// Stream 80: consumes input messages and answers with their count at the end.
pub const SINK: u8 = 80;

/// Capacities of the built-in echo stream (in, out), as the issue specifies for `node`.
pub const ECHO_CAPACITY: usize = 4;

fn remote(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::new(e.to_string())
}

/// Parses the stream-79 payload: `N` or `N:SIZE` (the size is checked by the handler).
pub fn parse_count(p: &[u8]) -> Result<(u64, Option<u64>), RemoteError> {
    let s = std::str::from_utf8(p).map_err(|_| RemoteError::new("payload must be text"))?;
    let bad = || RemoteError::new(format!("invalid count {s:?}: expected N or N:SIZE"));
    match s.split_once(':') {
        None => Ok((s.trim().parse().map_err(|_| bad())?, None)),
        Some((n, size)) => Ok((
            n.trim().parse().map_err(|_| bad())?,
            Some(size.trim().parse().map_err(|_| bad())?),
        )),
    }
}

/// Checks a stream-79 message size against the message limit: the caller chooses it, and one
/// message must fit in one grid message (a larger one would also be refused by the receiver).
fn check_size(size: u64, max_message_size: usize) -> Result<usize, RemoteError> {
    let limit = nodegrid::wire::Limits { max_message_size }.max_payload();
    match usize::try_from(size) {
        Ok(s) if s <= limit => Ok(s),
        _ => Err(RemoteError::new(format!(
            "invalid size {size}: at most {limit} bytes per message (max_message_size {max_message_size})"
        ))),
    }
}

/// Registers the built-in handlers. `capacity` sizes the bench streams (the node uses 4 for
/// the echo stream as documented; benches pass `--capacity`).
pub fn register(m: &Manager, capacity: usize) -> Result<(), ConfigError> {
    m.register_single(
        ECHO,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )?;
    m.register_single(TEST2, |r: Request| async move {
        Err::<Bytes, _>(RemoteError::new(
            String::from_utf8_lossy(&r.bytes()).into_owned(),
        ))
    })?;
    m.register_stream(
        ECHO,
        StreamSpec::new()
            .in_capacity(capacity)
            .out_capacity(capacity),
        |_ctx: StreamContext, mut input: StreamInput, output: StreamOutput| async move {
            while let Some(item) = input.recv().await {
                output.send(item).await.map_err(remote)?;
            }
            Ok(())
        },
    )?;
    let max_size = m.config().max_message_size;
    m.register_stream(
        TEST2,
        StreamSpec::new().in_capacity(0).out_capacity(capacity),
        move |ctx: StreamContext, _input: StreamInput, output: StreamOutput| async move {
            let (n, size) = parse_count(&ctx.payload.unwrap_or_default())?;
            let block = match size {
                Some(s) => Some(Bytes::from(vec![0x5a; check_size(s, max_size)?])),
                None => None,
            };
            for i in 0..n {
                let item = match &block {
                    Some(b) => b.clone(),
                    None => Bytes::from(i.to_string()),
                };
                output.send(item).await.map_err(remote)?;
            }
            Ok(())
        },
    )?;
    m.register_stream(
        SINK,
        StreamSpec::new().in_capacity(capacity).out_capacity(1),
        |_ctx: StreamContext, mut input: StreamInput, output: StreamOutput| async move {
            let mut n = 0u64;
            while input.recv().await.is_some() {
                n += 1;
            }
            output
                .send(Bytes::from(n.to_string()))
                .await
                .map_err(remote)?;
            Ok(())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts() {
        assert_eq!(super::parse_count(b"12").unwrap(), (12, None));
        assert_eq!(super::parse_count(b"3:1024").unwrap(), (3, Some(1024)));
        assert!(super::parse_count(b"x").is_err());
        assert!(super::parse_count(b"1:y").is_err());
    }
}
