//! Boxes of the ISO base media file format (ISO/IEC 14496-12 §4.2): a 32-bit size and a four-character type, a
//! 64-bit `largesize` when the size is 1, and "to the end of the enclosing space" when it is 0; a full box
//! (§4.2.2) adds a version byte and 24 flag bits. Top-level boxes are read from the file one header at a time
//! (an `mdat` is never loaded); the small boxes holding tables (`moov`, `moof`) are loaded whole, after their size
//! was checked against a cap, and walked here as slices. Every read is bounds-checked: a box that runs past its
//! parent, a size smaller than its header or a table longer than its box is an error, never a panic.

use std::io::{self, Read, Seek, SeekFrom};

use super::Mp4Error;

pub(crate) type FourCc = [u8; 4];

/// A box's place in the file. `size` includes the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: FourCc,
    pub offset: u64,
    pub header_len: u64,
    pub size: u64,
}

impl Header {
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }

    pub fn body_offset(&self) -> u64 {
        self.offset + self.header_len
    }
}

/// The top-level box starting at `pos`, or `None` when it is not wholly in the first `file_len` bytes: its header
/// or its body is cut short (a file still being written), or its size is 0 ("to the end of the file", which a
/// growing file never confirms).
pub(crate) fn top_level<R: Read + Seek>(
    r: &mut R,
    pos: u64,
    file_len: u64,
) -> Result<Option<Header>, Mp4Error> {
    if file_len.saturating_sub(pos) < 8 {
        return Ok(None);
    }
    r.seek(SeekFrom::Start(pos))?;
    let mut head = [0u8; 16];
    r.read_exact(&mut head[..8])?;
    let kind = [head[4], head[5], head[6], head[7]];
    let (size, header_len) = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
        0 => return Ok(None),
        1 => {
            if file_len - pos < 16 {
                return Ok(None);
            }
            r.read_exact(&mut head[8..16])?;
            let large = u64::from_be_bytes([
                head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
            ]);
            (large, 16)
        }
        n => (u64::from(n), 8),
    };
    if size < header_len {
        return Err(malformed(
            pos,
            &kind,
            format!("size {size} is smaller than its header"),
        ));
    }
    if size > file_len - pos {
        return Ok(None);
    }
    Ok(Some(Header {
        kind,
        offset: pos,
        header_len,
        size,
    }))
}

/// Loads the body of a box already known to lie in the file, refusing one larger than `cap` bytes.
pub(crate) fn load_body<R: Read + Seek>(
    r: &mut R,
    h: &Header,
    cap: u64,
) -> Result<Vec<u8>, Mp4Error> {
    let len = h.size - h.header_len;
    if len > cap {
        return Err(malformed(
            h.offset,
            &h.kind,
            format!("{len} bytes, more than the {cap} allowed"),
        ));
    }
    r.seek(SeekFrom::Start(h.body_offset()))?;
    let mut body = Vec::new();
    // `take` + `read_to_end` rather than a pre-sized buffer: a file shorter than it claimed allocates nothing more.
    r.take(len).read_to_end(&mut body)?;
    if body.len() as u64 != len {
        return Err(Mp4Error::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} at byte {} ends early", name(&h.kind), h.offset),
        )));
    }
    Ok(body)
}

/// A box inside a loaded parent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Child<'a> {
    pub kind: FourCc,
    /// File offset of the box's first byte.
    pub offset: u64,
    pub body: &'a [u8],
    /// File offset of `body[0]`.
    pub body_offset: u64,
}

impl<'a> Child<'a> {
    pub fn fields(&self) -> Fields<'a> {
        Fields::new(self.body, self.body_offset, self.kind)
    }

    pub fn children(&self) -> Children<'a> {
        Children::new(self.body, self.body_offset)
    }

    /// The first child of type `kind`, if any.
    pub fn child(&self, kind: &FourCc) -> Result<Option<Child<'a>>, Mp4Error> {
        for c in self.children() {
            let c = c?;
            if &c.kind == kind {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// The first child of type `kind`, required.
    pub fn need(&self, kind: &FourCc) -> Result<Child<'a>, Mp4Error> {
        self.child(kind)?
            .ok_or_else(|| malformed(self.offset, &self.kind, format!("has no {}", name(kind))))
    }
}

/// The boxes laid end to end in a slice. Stops at the end, or at fewer than 8 trailing bytes (padding some
/// writers leave); yields one error and then stops at a box that does not fit.
pub(crate) struct Children<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Children<'a> {
    pub fn new(data: &'a [u8], base: u64) -> Self {
        Children { data, pos: 0, base }
    }

    fn next_box(&mut self) -> Result<Option<Child<'a>>, Mp4Error> {
        let rest = &self.data[self.pos..];
        if rest.len() < 8 {
            return Ok(None);
        }
        let offset = self.base + self.pos as u64;
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (size, header_len) = match u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) {
            0 => (rest.len() as u64, 8),
            1 => match rest.get(8..16) {
                Some(b) => (
                    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                    16,
                ),
                None => return Err(malformed(offset, &kind, "largesize is cut short".into())),
            },
            n => (u64::from(n), 8),
        };
        if size < header_len {
            return Err(malformed(
                offset,
                &kind,
                format!("size {size} is smaller than its header"),
            ));
        }
        if size > rest.len() as u64 {
            return Err(malformed(
                offset,
                &kind,
                format!("size {size} runs past its parent"),
            ));
        }
        let (size, header_len) = (size as usize, header_len as usize);
        self.pos += size;
        Ok(Some(Child {
            kind,
            offset,
            body: &rest[header_len..size],
            body_offset: offset + header_len as u64,
        }))
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Child<'a>, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.next_box().transpose();
        if matches!(item, Some(Err(_))) {
            self.pos = self.data.len();
        }
        item
    }
}

/// Big-endian fields of one box body, read front to back.
pub(crate) struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    kind: FourCc,
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8], base: u64, kind: FourCc) -> Self {
        Fields {
            data,
            pos: 0,
            base,
            kind,
        }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// File offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        if n > self.remaining() {
            return Err(self.error(format!("is cut short ({n} more bytes wanted)")));
        }
        let b = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        self.bytes(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Result<u8, Mp4Error> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Mp4Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, Mp4Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, Mp4Error> {
        let b = self.bytes(8)?;
        Ok(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// A 32-bit field in version 0 of a full box, 64-bit in version 1.
    pub fn u32_or_u64(&mut self, version: u8) -> Result<u64, Mp4Error> {
        if version == 0 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }

    /// The version and flags of a full box.
    pub fn full_box(&mut self) -> Result<(u8, u32), Mp4Error> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }

    /// An entry count, checked against what the rest of the box can hold, so a table is never allocated for
    /// entries the box does not contain.
    pub fn count(&mut self, entry_size: usize) -> Result<usize, Mp4Error> {
        let at = self.offset();
        let n = self.u32()? as usize;
        if entry_size > 0 && n > self.remaining() / entry_size {
            return Err(malformed(
                at,
                &self.kind,
                format!("{n} entries do not fit in the box"),
            ));
        }
        Ok(n)
    }

    pub fn error(&self, what: String) -> Mp4Error {
        malformed(self.offset(), &self.kind, what)
    }
}

/// A four-character code for messages: printable as is, escaped otherwise.
pub(crate) fn name(kind: &FourCc) -> String {
    kind.iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

pub(crate) fn malformed(offset: u64, kind: &FourCc, what: String) -> Mp4Error {
    Mp4Error::Malformed {
        offset,
        what: format!("{}: {what}", name(kind)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::mp4::testbuild::bx;

    fn kinds(data: &[u8]) -> Vec<Result<(FourCc, usize), String>> {
        Children::new(data, 100)
            .map(|c| c.map(|c| (c.kind, c.body.len())).map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn walks_children_with_every_size_form() {
        let mut data = bx(b"free", &[1, 2, 3]);
        let mut large = vec![0, 0, 0, 1];
        large.extend_from_slice(b"skip");
        large.extend_from_slice(&20u64.to_be_bytes());
        large.extend_from_slice(&[9; 4]);
        data.extend(large);
        data.extend([0, 0, 0, 0, b'm', b'd', b'a', b't', 7, 7]);
        assert_eq!(
            kinds(&data)
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .unwrap(),
            vec![(*b"free", 3), (*b"skip", 4), (*b"mdat", 2)]
        );
        // Fewer than 8 trailing bytes are padding.
        data.truncate(11 + 20);
        data.extend([0; 5]);
        assert_eq!(kinds(&data).len(), 2);
    }

    #[test]
    fn hostile_children_are_errors_and_end_the_walk() {
        for bad in [
            vec![0, 0, 0, 4, b'f', b'r', b'e', b'e'],
            vec![0, 0, 0, 7, b'f', b'r', b'e', b'e', 0],
            vec![0, 0, 1, 0, b'f', b'r', b'e', b'e'],
            vec![0, 0, 0, 1, b'f', b'r', b'e', b'e', 0, 0],
            [
                vec![0, 0, 0, 1],
                b"free".to_vec(),
                8u64.to_be_bytes().to_vec(),
            ]
            .concat(),
            [
                vec![0, 0, 0, 1],
                b"free".to_vec(),
                u64::MAX.to_be_bytes().to_vec(),
            ]
            .concat(),
        ] {
            let mut data = bad.clone();
            data.extend(bx(b"skip", &[]));
            let got = kinds(&data);
            assert_eq!(got.len(), 1, "{bad:?}: {got:?}");
            assert!(got[0].is_err(), "{bad:?}");
        }
    }

    #[test]
    fn top_level_headers_stop_at_what_is_not_in_the_file() {
        let mut file = bx(b"ftyp", &[0; 8]);
        file.extend(bx(b"mdat", &[0; 100]));
        let len = file.len() as u64;
        let mut r = Cursor::new(&file);
        let h = top_level(&mut r, 0, len).unwrap().unwrap();
        assert_eq!((h.kind, h.size, h.end()), (*b"ftyp", 16, 16));
        assert_eq!(top_level(&mut r, 16, len).unwrap().unwrap().end(), len);
        assert_eq!(
            top_level(&mut r, 16, len - 1).unwrap(),
            None,
            "body cut short"
        );
        assert_eq!(top_level(&mut r, 16, 20).unwrap(), None, "header cut short");
        assert_eq!(top_level(&mut r, len, len).unwrap(), None);
        let mut zero = file.clone();
        zero[16..20].copy_from_slice(&[0; 4]);
        assert_eq!(
            top_level(&mut Cursor::new(&zero), 16, len).unwrap(),
            None,
            "size 0"
        );
        let mut small = file.clone();
        small[16..20].copy_from_slice(&[0, 0, 0, 3]);
        assert!(top_level(&mut Cursor::new(&small), 16, len).is_err());
        let mut large = [
            vec![0, 0, 0, 1],
            b"mdat".to_vec(),
            24u64.to_be_bytes().to_vec(),
        ]
        .concat();
        large.extend([5; 8]);
        let h = top_level(&mut Cursor::new(&large), 0, 24).unwrap().unwrap();
        assert_eq!((h.header_len, h.body_offset(), h.size), (16, 16, 24));
        assert_eq!(top_level(&mut Cursor::new(&large), 0, 12).unwrap(), None);
    }

    #[test]
    fn bodies_are_capped_and_fields_bounds_checked() {
        let file = bx(b"moov", &[0, 0, 0, 2, 1, 2]);
        let h = top_level(&mut Cursor::new(&file), 0, file.len() as u64)
            .unwrap()
            .unwrap();
        assert!(load_body(&mut Cursor::new(&file), &h, 5).is_err());
        let body = load_body(&mut Cursor::new(&file), &h, 6).unwrap();
        assert!(
            Fields::new(&body, 8, *b"moov").count(2).is_err(),
            "2 entries of 2 bytes in 2 bytes"
        );
        let mut f = Fields::new(&body, 8, *b"moov");
        assert_eq!(f.count(1).unwrap(), 2);
        assert_eq!(f.u16().unwrap(), 0x0102);
        assert!(f.u8().is_err());
        // A file shorter than its header said: an I/O error, not a short body.
        assert!(load_body(&mut Cursor::new(&file[..12]), &h, 6).is_err());
    }
}
