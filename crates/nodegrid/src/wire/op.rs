//! Op codes (PROTOCOL.md §3.3).

/// The operation a grid message performs.
///
/// Values the session does not handle (0, 16, 18..=255) decode as [`Op::Unknown`] and are
/// logged and ignored by the session; they are not decode errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// 1: dialer's first message (handshake request).
    Connect,
    /// 2: acceptor's reply to Connect.
    ConnectResponse,
    /// 3: ping; MuxID 0 = connection ping, otherwise a caller's stream ping.
    Ping,
    /// 4: reply to Ping.
    Pong,
    /// 5: caller opens a stream.
    ConnectMux,
    /// 6: callee rejects a request or stream.
    MuxConnectError,
    /// 7: callee → caller: your call is gone.
    DisconnectClientMux,
    /// 8: caller → callee: cancel my stream.
    DisconnectServerMux,
    /// 9: caller's stream input item or input EOF.
    MuxClientMsg,
    /// 10: callee's stream output item, EOF or error.
    MuxServerMsg,
    /// 11: caller grants the callee one output credit.
    UnblockSrvMux,
    /// 12: callee grants the caller one input credit.
    UnblockClMux,
    /// 13: callee acknowledges a stream.
    AckMux,
    /// 14: single request.
    Request,
    /// 15: single response.
    Response,
    /// 16: defined by the reference, never sent and not handled.
    Disconnect,
    /// 17: merged envelope carrying several messages.
    Merged,
    /// Any other value.
    Unknown(u8),
}

impl Op {
    /// The op's numeric value on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            Op::Connect => 1,
            Op::ConnectResponse => 2,
            Op::Ping => 3,
            Op::Pong => 4,
            Op::ConnectMux => 5,
            Op::MuxConnectError => 6,
            Op::DisconnectClientMux => 7,
            Op::DisconnectServerMux => 8,
            Op::MuxClientMsg => 9,
            Op::MuxServerMsg => 10,
            Op::UnblockSrvMux => 11,
            Op::UnblockClMux => 12,
            Op::AckMux => 13,
            Op::Request => 14,
            Op::Response => 15,
            Op::Disconnect => 16,
            Op::Merged => 17,
            Op::Unknown(v) => v,
        }
    }

    /// The op for a wire value. Total: unknown values map to [`Op::Unknown`].
    pub fn from_u8(v: u8) -> Op {
        match v {
            1 => Op::Connect,
            2 => Op::ConnectResponse,
            3 => Op::Ping,
            4 => Op::Pong,
            5 => Op::ConnectMux,
            6 => Op::MuxConnectError,
            7 => Op::DisconnectClientMux,
            8 => Op::DisconnectServerMux,
            9 => Op::MuxClientMsg,
            10 => Op::MuxServerMsg,
            11 => Op::UnblockSrvMux,
            12 => Op::UnblockClMux,
            13 => Op::AckMux,
            14 => Op::Request,
            15 => Op::Response,
            16 => Op::Disconnect,
            17 => Op::Merged,
            v => Op::Unknown(v),
        }
    }

    /// The reference's name for the op (`Op(N)` for unknown values, as the reference prints).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(match self {
            Op::Connect => "Connect",
            Op::ConnectResponse => "ConnectResponse",
            Op::Ping => "Ping",
            Op::Pong => "Pong",
            Op::ConnectMux => "ConnectMux",
            Op::MuxConnectError => "MuxConnectError",
            Op::DisconnectClientMux => "DisconnectClientMux",
            Op::DisconnectServerMux => "DisconnectServerMux",
            Op::MuxClientMsg => "MuxClientMsg",
            Op::MuxServerMsg => "MuxServerMsg",
            Op::UnblockSrvMux => "UnblockSrvMux",
            Op::UnblockClMux => "UnblockClMux",
            Op::AckMux => "AckMux",
            Op::Request => "Request",
            Op::Response => "Response",
            Op::Disconnect => "Disconnect",
            Op::Merged => "Merged",
            Op::Unknown(v) => return std::borrow::Cow::Owned(format!("Op({v})")),
        })
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_roundtrips() {
        for v in 0..=255u8 {
            assert_eq!(Op::from_u8(v).as_u8(), v);
        }
        assert_eq!(Op::from_u8(14), Op::Request);
        assert_eq!(Op::from_u8(0), Op::Unknown(0));
        assert_eq!(Op::from_u8(18).name(), "Op(18)");
        assert_eq!(Op::Merged.name(), "Merged");
    }
}
