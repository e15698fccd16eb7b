//! Reading events from a stream: the magic, then one whole event at a time, its size checked
//! before its body is read.

use super::error::BinlogError;
use super::event::{Header, HEADER_LEN, MAGIC};
use std::io::{self, Read};

/// Reads until `buf` is full or the input ends; the number of bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads the magic; anything else is [`BinlogError::NotABinlog`].
pub fn read_magic(input: &mut impl Read) -> Result<(), BinlogError> {
    let mut magic = [0u8; 4];
    let got =
        read_full(input, &mut magic).map_err(|source| BinlogError::Read { pos: 0, source })?;
    if got < magic.len() || magic != MAGIC {
        return Err(BinlogError::NotABinlog {
            found: magic[..got].to_vec(),
        });
    }
    Ok(())
}

/// Reads the event at `pos` into `event` (header included); `None` at the end of the input.
/// The body is read as it arrives, so a forged `event_size` costs no more memory than the
/// bytes really there.
pub fn read_event(
    input: &mut impl Read,
    pos: u64,
    max: u64,
    event: &mut Vec<u8>,
) -> Result<Option<Header>, BinlogError> {
    let read_err = |source| BinlogError::Read { pos, source };
    event.clear();
    let mut head = [0u8; HEADER_LEN];
    let got = read_full(input, &mut head).map_err(read_err)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(BinlogError::Truncated {
            pos,
            needed: HEADER_LEN as u64,
            got: got as u64,
        });
    }
    let header = Header::parse(&head);
    header.check(pos, max)?;
    event.extend_from_slice(&head);
    let needed = u64::from(header.event_size);
    input
        .take(needed - HEADER_LEN as u64)
        .read_to_end(event)
        .map_err(read_err)?;
    if (event.len() as u64) < needed {
        return Err(BinlogError::Truncated {
            pos,
            needed,
            got: event.len() as u64,
        });
    }
    Ok(Some(header))
}
