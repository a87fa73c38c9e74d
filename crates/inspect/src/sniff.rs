//! File types by their bytes, never by their names.

use std::io::Cursor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pdf,
    Docx,
    Xlsx,
    Pptx,
    Odt,
    Ods,
    Odp,
    /// A zip that is none of the above.
    Zip,
    /// OLE compound file holding an encrypted OOXML package.
    EncryptedOffice,
    Xls,
    Doc,
    Ppt,
    /// Another compound file.
    /// An Outlook item (.msg).
    Msg,
    Cfb,
    Gzip,
    Tar,
    SevenZip,
    Rar,
    Rtf,
    Html,
    Eml,
    Text,
    Image,
    Binary,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pdf => "pdf",
            Kind::Docx => "docx",
            Kind::Xlsx => "xlsx",
            Kind::Pptx => "pptx",
            Kind::Odt => "odt",
            Kind::Ods => "ods",
            Kind::Odp => "odp",
            Kind::Zip => "zip",
            Kind::EncryptedOffice => "encrypted-office",
            Kind::Xls => "xls",
            Kind::Doc => "doc",
            Kind::Ppt => "ppt",
            Kind::Msg => "msg",
            Kind::Cfb => "cfb",
            Kind::Gzip => "gzip",
            Kind::Tar => "tar",
            Kind::SevenZip => "7z",
            Kind::Rar => "rar",
            Kind::Rtf => "rtf",
            Kind::Html => "html",
            Kind::Eml => "eml",
            Kind::Text => "text",
            Kind::Image => "image",
            Kind::Binary => "binary",
        }
    }

    /// MIME type for files found inside archives (which declare none).
    pub fn mime(self) -> &'static str {
        match self {
            Kind::Pdf => "application/pdf",
            Kind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Kind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Kind::Pptx => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            Kind::Odt => "application/vnd.oasis.opendocument.text",
            Kind::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            Kind::Odp => "application/vnd.oasis.opendocument.presentation",
            Kind::Zip => "application/zip",
            Kind::EncryptedOffice | Kind::Cfb => "application/x-ole-storage",
            Kind::Msg => "application/vnd.ms-outlook",
            Kind::Xls => "application/vnd.ms-excel",
            Kind::Doc => "application/msword",
            Kind::Ppt => "application/vnd.ms-powerpoint",
            Kind::Gzip => "application/gzip",
            Kind::Tar => "application/x-tar",
            Kind::SevenZip => "application/x-7z-compressed",
            Kind::Rar => "application/vnd.rar",
            Kind::Rtf => "application/rtf",
            Kind::Html => "text/html",
            Kind::Eml => "message/rfc822",
            Kind::Text => "text/plain",
            Kind::Image => "image/*",
            Kind::Binary => "application/octet-stream",
        }
    }

    /// File name extensions this kind is known by.
    fn extensions(self) -> &'static [&'static str] {
        match self {
            Kind::Pdf => &["pdf"],
            Kind::Docx => &["docx", "docm", "dotx"],
            Kind::Xlsx => &["xlsx", "xlsm", "xltx"],
            Kind::Pptx => &["pptx", "pptm", "ppsx"],
            Kind::Odt => &["odt"],
            Kind::Ods => &["ods"],
            Kind::Odp => &["odp"],
            Kind::Zip => &["zip"],
            // An encrypted Office file keeps its usual name.
            Kind::EncryptedOffice => &["docx", "xlsx", "pptx", "docm", "xlsm", "pptm", "doc", "xls", "ppt"],
            Kind::Xls => &["xls"],
            Kind::Doc => &["doc"],
            Kind::Ppt => &["ppt"],
            Kind::Msg => &["msg"],
            Kind::Cfb => &["msg", "doc", "xls", "ppt"],
            Kind::Gzip => &["gz", "tgz"],
            Kind::Tar => &["tar"],
            Kind::SevenZip => &["7z"],
            Kind::Rar => &["rar"],
            Kind::Rtf => &["rtf", "doc"],
            Kind::Html => &["html", "htm"],
            Kind::Eml => &["eml"],
            Kind::Text => &["txt", "csv", "tsv", "log", "md", "json", "xml"],
            Kind::Image => &["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"],
            Kind::Binary => &[],
        }
    }

    /// True when the name's extension belongs to a *different* known kind:
    /// `invoice.pdf` holding a zip. Unknown extensions are no evidence.
    pub fn mismatches(self, name: &str) -> bool {
        let Some((_, ext)) = name.rsplit_once('.') else { return false };
        let ext = ext.to_ascii_lowercase();
        let claimed_by_other = ALL.iter().any(|k| *k != self && k.extensions().contains(&ext.as_str()));
        claimed_by_other && !self.extensions().contains(&ext.as_str())
    }
}

const ALL: [Kind; 24] = [
    Kind::Pdf,
    Kind::Docx,
    Kind::Xlsx,
    Kind::Pptx,
    Kind::Odt,
    Kind::Ods,
    Kind::Odp,
    Kind::Zip,
    Kind::EncryptedOffice,
    Kind::Xls,
    Kind::Doc,
    Kind::Ppt,
    Kind::Msg,
    Kind::Cfb,
    Kind::Gzip,
    Kind::Tar,
    Kind::SevenZip,
    Kind::Rar,
    Kind::Rtf,
    Kind::Html,
    Kind::Eml,
    Kind::Text,
    Kind::Image,
    Kind::Binary,
];

pub fn sniff(bytes: &[u8]) -> Kind {
    let head = &bytes[..bytes.len().min(1024)];
    if find(head, b"%PDF-").is_some() {
        return Kind::Pdf;
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return zip_kind(bytes);
    }
    if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return cfb_kind(bytes);
    }
    if bytes.starts_with(&[0x1F, 0x8B]) {
        return Kind::Gzip;
    }
    if bytes.starts_with(b"7z\xBC\xAF\x27\x1C") {
        return Kind::SevenZip;
    }
    if bytes.starts_with(b"Rar!\x1A\x07") {
        return Kind::Rar;
    }
    if bytes.len() >= 262 && &bytes[257..262] == b"ustar" {
        return Kind::Tar;
    }
    if bytes.starts_with(b"{\\rtf") {
        return Kind::Rtf;
    }
    let images: [&[u8]; 7] = [b"\x89PNG", b"\xFF\xD8\xFF", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*"];
    let webp = bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP");
    if images.iter().any(|m| bytes.starts_with(m)) || webp {
        return Kind::Image;
    }
    let text = String::from_utf8_lossy(&head[..head.len().min(512)]).to_ascii_lowercase();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with("<!doctype html") || trimmed.starts_with("<html") || trimmed.contains("<body") {
        return Kind::Html;
    }
    if looks_like_message(head) {
        return Kind::Eml;
    }
    if crate::text::is_text(&bytes[..bytes.len().min(8192)]) {
        return Kind::Text;
    }
    Kind::Binary
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A header block of known message fields at the very start.
fn looks_like_message(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut fields = 0;
    for line in text.lines().take(20) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, _)) = line.split_once(':') else { return false };
        let name = name.to_ascii_lowercase();
        if ["from", "to", "subject", "date", "received", "message-id", "mime-version", "return-path", "cc"]
            .contains(&name.as_str())
        {
            fields += 1;
        } else if name.contains(' ') || name.is_empty() {
            return false;
        }
    }
    fields >= 2
}

fn zip_kind(bytes: &[u8]) -> Kind {
    let Ok(archive) = zip::ZipArchive::new(Cursor::new(bytes)) else { return Kind::Zip };
    let names: Vec<String> = archive.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    let has_prefix = |p: &str| names.iter().any(|n| n.starts_with(p));
    if has("[Content_Types].xml") {
        if has_prefix("word/") {
            return Kind::Docx;
        }
        if has_prefix("xl/") {
            return Kind::Xlsx;
        }
        if has_prefix("ppt/") {
            return Kind::Pptx;
        }
    }
    if has("mimetype") {
        let mut archive = archive;
        if let Ok(mut f) = archive.by_name("mimetype") {
            let mut m = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::Read::take(&mut f, 100), &mut m);
            match m.trim() {
                "application/vnd.oasis.opendocument.text" => return Kind::Odt,
                "application/vnd.oasis.opendocument.spreadsheet" => return Kind::Ods,
                "application/vnd.oasis.opendocument.presentation" => return Kind::Odp,
                _ => {}
            }
        }
    }
    Kind::Zip
}

fn cfb_kind(bytes: &[u8]) -> Kind {
    let Ok(file) = cfb::CompoundFile::open(Cursor::new(bytes)) else { return Kind::Cfb };
    let root: Vec<String> = file.read_root_storage().map(|e| e.name().to_string()).collect();
    let has = |n: &str| root.iter().any(|r| r == n);
    if has("EncryptedPackage") {
        Kind::EncryptedOffice
    } else if has("Workbook") || has("Book") {
        Kind::Xls
    } else if has("WordDocument") {
        Kind::Doc
    } else if has("PowerPoint Document") {
        Kind::Ppt
    } else if has("__properties_version1.0") || root.iter().any(|r| r.starts_with("__substg1.0_")) {
        Kind::Msg
    } else {
        Kind::Cfb
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_needs_a_known_other_extension() {
        assert!(Kind::Zip.mismatches("invoice.pdf"));
        assert!(!Kind::Pdf.mismatches("invoice.pdf"));
        assert!(!Kind::Zip.mismatches("data.bin"));
        assert!(!Kind::Text.mismatches("list.CSV"));
        assert!(!Kind::EncryptedOffice.mismatches("見積書.xlsx"));
        assert!(!Kind::Zip.mismatches("noextension"));
    }

    #[test]
    fn magic_bytes() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), Kind::Pdf);
        assert_eq!(sniff(b"{\\rtf1\\ansi hello}"), Kind::Rtf);
        assert_eq!(sniff(b"7z\xBC\xAF\x27\x1C\x00\x04"), Kind::SevenZip);
        assert_eq!(sniff(b"Rar!\x1A\x07\x01\x00"), Kind::Rar);
        assert_eq!(sniff(b"<!DOCTYPE html><html><body>x</body></html>"), Kind::Html);
        assert_eq!(sniff(b"From: a@b.c\r\nSubject: x\r\n\r\nbody"), Kind::Eml);
        assert_eq!(sniff("請求書,金額\n1,2\n".as_bytes()), Kind::Text);
        assert_eq!(sniff(&[0u8, 1, 2, 3, 0, 0, 0xFF, 0xFE, 0]), Kind::Binary);
    }
}
