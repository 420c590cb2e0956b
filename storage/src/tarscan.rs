//! Follows a tar stream's block structure as its bytes pass, beside the tar reader, to
//! refuse what the reader would take too trustingly: metadata members (GNU long names,
//! PAX records) larger than 1 MiB, which it reads whole into memory, sizes that overflow,
//! and a stream that ends inside a member (Go's archive/tar, and so Podman, refuse both).
//!
//! It mirrors the `tar` crate's layout rules: every member's data is `size` bytes (the
//! header's, or a preceding PAX `size` record's) padded to 512; the first zero block ends
//! the archive. Old GNU sparse members, which no image builder writes, stop the scan.

use std::io;

const BLOCK: u64 = 512;
/// Go's archive/tar limit for long names and PAX records.
pub const META_LIMIT: u64 = 1 << 20;

#[derive(Default)]
pub struct Scanner {
    /// Stream offset of the next byte to come.
    pos: u64,
    /// Offset of the next header block.
    next: u64,
    block: Vec<u8>,
    /// Data of a PAX member being collected, and where it ends.
    pax: Option<(Vec<u8>, u64)>,
    /// A PAX `size` record for the next member.
    pax_size: Option<u64>,
    /// The end of the archive was seen, or the scan gave up.
    done: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The numeric field `f`: octal text or base-256 (high bit of the first byte set).
fn number(f: &[u8]) -> io::Result<u64> {
    if f.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for &b in &f[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| invalid("a tar header's size field overflows".into()))?;
        }
        return Ok(v);
    }
    let text: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).unwrap_or("0"), 8)
        .map_err(|_| invalid("a tar header's size field overflows".into()))
}

/// The value of the last `size` record of PAX data.
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut found = None;
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return found;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(v) = record.strip_prefix(b"size=") {
            found = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

impl Scanner {
    /// Takes the next bytes of the stream.
    pub fn consume(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() && !self.done {
            if self.pos < self.next {
                let n = (self.next - self.pos).min(buf.len() as u64) as usize;
                if let Some((data, end)) = &mut self.pax {
                    let want = end.saturating_sub(self.pos).min(n as u64) as usize;
                    data.extend_from_slice(&buf[..want]);
                }
                self.pos += n as u64;
                buf = &buf[n..];
                if self.pos == self.next {
                    if let Some((data, _)) = self.pax.take() {
                        self.pax_size = pax_size(&data);
                    }
                }
                continue;
            }
            let n = (BLOCK as usize - self.block.len()).min(buf.len());
            self.block.extend_from_slice(&buf[..n]);
            self.pos += n as u64;
            buf = &buf[n..];
            if self.block.len() == BLOCK as usize {
                let block = std::mem::take(&mut self.block);
                self.header(&block)?;
            }
        }
        Ok(())
    }

    fn header(&mut self, h: &[u8]) -> io::Result<()> {
        if h.iter().all(|&b| b == 0) {
            self.done = true;
            return Ok(());
        }
        let kind = h[156];
        let meta = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let mut size = number(&h[124..136])?;
        if !meta {
            if let Some(s) = self.pax_size.take() {
                size = s;
            }
        }
        if kind == b'S' {
            self.done = true;
            return Ok(());
        }
        if meta && size > META_LIMIT {
            let what = match kind {
                b'L' => "long name",
                b'K' => "long link name",
                _ => "PAX header",
            };
            return Err(invalid(format!(
                "a tar {what} member of {size} bytes: more than the 1 MiB allowed"
            )));
        }
        let padded = size
            .checked_add(BLOCK - 1)
            .map(|s| s & !(BLOCK - 1))
            .and_then(|s| s.checked_add(self.pos))
            .ok_or_else(|| invalid(format!("a tar member's size {size} overflows")))?;
        if kind == b'x' {
            self.pax = Some((Vec::with_capacity(size as usize), self.pos + size));
        }
        self.next = padded;
        Ok(())
    }

    /// The stream ended: an error unless it ended between members.
    pub fn finish(&self) -> io::Result<()> {
        if self.done || (self.pos == self.next && self.block.is_empty()) {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the layer's tar stream is truncated: it ends inside a member",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(data: &[u8], chunk: usize) -> io::Result<()> {
        let mut s = Scanner::default();
        for c in data.chunks(chunk) {
            s.consume(c)?;
        }
        s.finish()
    }

    fn sample() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(700);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("d/{}", "x".repeat(200)), &[1u8; 700][..])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        b.append_pax_extensions([("user.a", &b"v"[..])]).unwrap();
        b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn follows_valid_streams_in_any_chunking() {
        let data = sample();
        for chunk in [1, 7, 512, 4096] {
            scan(&data, chunk).unwrap();
        }
        // Without the end-of-archive blocks, ending between members is fine too.
        scan(&data[..data.len() - 1024], 100).unwrap();
    }

    #[test]
    fn refuses_truncation_and_huge_metadata() {
        let data = sample();
        assert!(scan(&data[..600], 64).is_err());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(1 << 40);
        h.set_cksum();
        let err = scan(h.as_bytes(), 512).unwrap_err();
        assert!(err.to_string().contains("long name"), "{err}");
    }

    #[test]
    fn pax_size_overrides_the_header() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"1000"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_cksum();
        let mut data = b.into_inner().unwrap();
        data.truncate(data.len() - 1024); // the end-of-archive blocks
        data.extend_from_slice(h.as_bytes());
        data.extend_from_slice(&[7u8; 1024]);
        scan(&data, 300).unwrap();
        assert!(scan(&data[..data.len() - 100], 300).is_err());
    }
}
