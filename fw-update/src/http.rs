//! HTTP for fw-update: fw-core's curl transfers (fw_core::http, shared
//! with fw-fetch), and small documents (the index and its signature).

use std::io::Read;
use std::time::Duration;

pub use fw_core::http::{start, Ended, Response, Stall, Transfer};
use fw_core::{Error, Result};

/// The longest a small document (the index, its signature) may take.
const SMALL_MAX_TIME: Duration = Duration::from_secs(120);

/// GETs a small document (at most `limit` bytes). `etag`: sent as
/// If-None-Match; a 304 gives `Ok(None)`.
pub fn get_small(
    url: &str,
    etag: Option<&str>,
    limit: u64,
    stall: Stall,
) -> Result<Option<(Vec<u8>, Response)>> {
    let mut extra = Vec::new();
    if let Some(etag) = etag {
        extra.push("-H".into());
        extra.push(format!("If-None-Match: {etag}"));
    }
    let (mut transfer, response) = start(url, &extra, stall, Some(SMALL_MAX_TIME))?;
    let Some(response) = response else {
        let ended = transfer.finish();
        return Err(Error::failed(format!(
            "cannot fetch {url}: {}; check the network and the URL",
            ended.why()
        )));
    };
    let mut body = Vec::new();
    let read = (&mut transfer).take(limit + 1).read_to_end(&mut body);
    if body.len() as u64 > limit {
        transfer.kill();
        return Err(Error::invalid(format!(
            "{url} is larger than {limit} bytes: not an fw index"
        )));
    }
    let ended = transfer.finish();
    if response.status == 304 && etag.is_some() {
        return Ok(None);
    }
    if response.status != 200 {
        return Err(Error::failed(format!(
            "{url}: the server answered HTTP {}; check the URL and that it is published",
            response.status
        )));
    }
    if let Err(e) = read {
        return Err(Error::failed(format!("cannot fetch {url}: {e}")));
    }
    if !ended.ok() {
        return Err(Error::failed(format!(
            "cannot fetch {url}: {}; check the network",
            ended.why()
        )));
    }
    Ok(Some((body, response)))
}
