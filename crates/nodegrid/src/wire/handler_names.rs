//! Handler names of the reference version (PROTOCOL.md Appendix C). They appear in
//! `Invalid Handler for type: <Name>` errors, so interop needs the exact texts.

use super::ids::HandlerId;
use super::subroute::SubrouteId;

const NAMES: [&str; 81] = [
    "handlerInvalid",
    "LockLock",
    "LockRLock",
    "LockUnlock",
    "LockRUnlock",
    "LockRefresh",
    "LockForceUnlock",
    "WalkDir",
    "StatVol",
    "DiskInfo",
    "NSScanner",
    "ReadXL",
    "ReadVersion",
    "DeleteFile",
    "DeleteVersion",
    "UpdateMetadata",
    "WriteMetadata",
    "CheckParts",
    "RenameData",
    "RenameFile",
    "ReadAll",
    "ServerVerify",
    "Trace",
    "Listen",
    "DeleteBucketMetadata",
    "LoadBucketMetadata",
    "ReloadSiteReplicationConfig",
    "ReloadPoolMeta",
    "StopRebalance",
    "LoadRebalanceMeta",
    "LoadTransitionTierConfig",
    "DeletePolicy",
    "LoadPolicy",
    "LoadPolicyMapping",
    "DeleteServiceAccount",
    "LoadServiceAccount",
    "DeleteUser",
    "LoadUser",
    "LoadGroup",
    "HealBucket",
    "MakeBucket",
    "HeadBucket",
    "DeleteBucket",
    "GetMetrics",
    "GetResourceMetrics",
    "GetMemInfo",
    "GetProcInfo",
    "GetOSInfo",
    "GetPartitions",
    "GetNetInfo",
    "GetCPUs",
    "ServerInfo",
    "GetSysConfig",
    "GetSysServices",
    "GetSysErrors",
    "GetAllBucketStats",
    "GetBucketStats",
    "GetSRMetrics",
    "GetPeerMetrics",
    "GetMetacacheListing",
    "UpdateMetacacheListing",
    "GetPeerBucketMetrics",
    "StorageInfo",
    "ConsoleLog",
    "ListDir",
    "GetLocks",
    "BackgroundHealStatus",
    "GetLastDayTierStats",
    "SignalService",
    "GetBandwidth",
    "WriteAll",
    "ListBuckets",
    "RenameDataInline",
    "RenameData2",
    "CheckParts2",
    "RenamePart",
    "ClearUploadID",
    "CheckParts3",
    "handlerTest",
    "handlerTest2",
    "handlerLast",
];

/// The reference's name of a handler ID (`handler<N>` beyond the reference's table).
pub fn handler_name(id: u8) -> std::borrow::Cow<'static, str> {
    match NAMES.get(id as usize) {
        Some(n) => std::borrow::Cow::Borrowed(n),
        None => std::borrow::Cow::Owned(format!("handler{id}")),
    }
}

/// The callee's text for a call to an unregistered handler (PROTOCOL.md §5.2).
pub(crate) fn invalid_handler_text(id: HandlerId, sub: Option<&SubrouteId>) -> String {
    if id == 0 {
        return "Invalid Handler".to_string();
    }
    match sub {
        Some(s) => format!("Invalid Handler for type: {}", s.to_go_bytes_string()),
        None => format!("Invalid Handler for type: {}", handler_name(id)),
    }
}

/// Whether `text` is a callee's answer to a call for an unregistered handler: one of the
/// texts of [`invalid_handler_text`], from any version of the reference (whose names move
/// between releases, PROTOCOL.md §7.1) or from nodegrid.
pub(crate) fn is_invalid_handler_text(text: &str) -> bool {
    text == "Invalid Handler" || text.starts_with("Invalid Handler for type: ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn recognised() {
        use super::{invalid_handler_text, is_invalid_handler_text};
        use crate::wire::SubrouteId;
        assert!(is_invalid_handler_text(&invalid_handler_text(0, None)));
        assert!(is_invalid_handler_text(&invalid_handler_text(12, None)));
        assert!(is_invalid_handler_text(&invalid_handler_text(
            12,
            Some(&SubrouteId::new(12, "kv/nope"))
        )));
        assert!(is_invalid_handler_text(
            "Invalid Handler for type: SomeOtherRelease"
        ));
        assert!(!is_invalid_handler_text("Invalid Handler for typ"));
        assert!(!is_invalid_handler_text("handler failed: Invalid Handler"));
    }

    #[test]
    fn table() {
        assert_eq!(super::handler_name(70), "WriteAll");
        assert_eq!(super::handler_name(77), "CheckParts3");
        assert_eq!(super::handler_name(78), "handlerTest");
        assert_eq!(super::handler_name(200), "handler200");
    }
}
