//! Reassembling a weights version from the chunks the coordinator sends, in order.

use std::sync::Arc;

use super::protocol::WeightsChunk;
use crate::weights::WeightsSnapshot;

/// A weights version being received.
pub(super) struct Incoming {
    header: WeightsChunk,
    bytes: Vec<u8>,
}

/// Adds one chunk to the version being received; the last chunk yields the whole snapshot
/// (its checksum is verified when it is loaded). Chunks must arrive in order.
pub(super) fn accept_chunk(
    incoming: &mut Option<Incoming>,
    header: WeightsChunk,
    chunk: Vec<u8>,
) -> Result<Option<WeightsSnapshot>, String> {
    if header.offset == 0 {
        *incoming = Some(Incoming {
            header,
            bytes: Vec::new(),
        });
    }
    let current = incoming.as_mut().ok_or_else(|| {
        format!(
            "weights version {}: a chunk at offset {} without its start",
            header.version, header.offset
        )
    })?;
    let same_version = current.header.version == header.version
        && current.header.checksum == header.checksum
        && current.header.total_bytes == header.total_bytes;
    if !same_version || current.bytes.len() as u64 != header.offset {
        let message = format!(
            "weights version {}: chunk at offset {} does not follow the {} bytes received of \
             version {}",
            header.version,
            header.offset,
            current.bytes.len(),
            current.header.version
        );
        *incoming = None;
        return Err(message);
    }
    if current.bytes.len() as u64 + chunk.len() as u64 > header.total_bytes {
        *incoming = None;
        return Err(format!(
            "weights version {}: more than the announced {} bytes",
            header.version, header.total_bytes
        ));
    }
    current.bytes.extend_from_slice(&chunk);
    if (current.bytes.len() as u64) < header.total_bytes {
        return Ok(None);
    }
    let done = incoming.take().expect("checked just above");
    Ok(Some(WeightsSnapshot {
        version: done.header.version,
        checksum: done.header.checksum,
        bytes: Arc::new(done.bytes),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u64, total_bytes: u64, offset: u64) -> WeightsChunk {
        WeightsChunk {
            version,
            checksum: 7,
            total_bytes,
            offset,
        }
    }

    #[test]
    fn chunks_in_order_make_the_whole_version() {
        let mut incoming = None;
        assert!(accept_chunk(&mut incoming, header(3, 5, 0), vec![1, 2])
            .unwrap()
            .is_none());
        let snapshot = accept_chunk(&mut incoming, header(3, 5, 2), vec![3, 4, 5])
            .unwrap()
            .expect("the last chunk completes the version");
        assert_eq!(snapshot.version, 3);
        assert_eq!(snapshot.checksum, 7);
        assert_eq!(*snapshot.bytes, vec![1, 2, 3, 4, 5]);
        assert!(incoming.is_none());
    }

    #[test]
    fn out_of_order_mixed_or_oversized_chunks_are_refused() {
        let mut incoming = None;
        let err = accept_chunk(&mut incoming, header(3, 5, 2), vec![3]).unwrap_err();
        assert!(err.contains("without its start"), "{err}");

        accept_chunk(&mut incoming, header(3, 5, 0), vec![1, 2]).unwrap();
        let err = accept_chunk(&mut incoming, header(4, 5, 2), vec![3]).unwrap_err();
        assert!(err.contains("does not follow"), "{err}");
        assert!(incoming.is_none(), "a broken transfer is dropped");

        accept_chunk(&mut incoming, header(3, 5, 0), vec![1, 2]).unwrap();
        let err = accept_chunk(&mut incoming, header(3, 5, 3), vec![3]).unwrap_err();
        assert!(err.contains("does not follow the 2 bytes"), "{err}");

        accept_chunk(&mut incoming, header(3, 5, 0), vec![1, 2]).unwrap();
        let err = accept_chunk(&mut incoming, header(3, 5, 2), vec![3, 4, 5, 6]).unwrap_err();
        assert!(err.contains("more than the announced 5 bytes"), "{err}");
    }

    #[test]
    fn a_new_start_replaces_an_unfinished_version() {
        let mut incoming = None;
        accept_chunk(&mut incoming, header(3, 5, 0), vec![1, 2]).unwrap();
        let snapshot = accept_chunk(&mut incoming, header(4, 1, 0), vec![9])
            .unwrap()
            .unwrap();
        assert_eq!(snapshot.version, 4);
        assert_eq!(*snapshot.bytes, vec![9]);
    }
}
