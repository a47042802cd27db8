//! Shared bench helpers: a counting allocator and a line-counting receiver on 127.0.0.1.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Counts allocations (not bytes) made through the global allocator.
pub struct CountingAlloc;

pub static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Requests received by [`start_receiver`] receivers.
pub static REQUESTS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts a receiver that answers 200 and counts NDJSON lines. Returns its URL and counter.
pub async fn start_receiver() -> (String, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", l.local_addr().expect("addr"));
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(nodegrid_log::internal(async move {
        while let Ok((sock, _)) = l.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let c = c.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let n = body.iter().filter(|b| **b == b'\n').count();
                            c.fetch_add(n as u64, Ordering::SeqCst);
                            REQUESTS.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::new())))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    }));
    (url, count)
}
