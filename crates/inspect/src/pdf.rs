//! PDF text, on lopdf's object parser and our own text layer: content
//! streams (and form XObjects) interpreted for text operators, each font's
//! codes mapped to Unicode through its ToUnicode CMap, its encoding
//! (WinAnsi, MacRoman, Differences), or for CID-keyed fonts without one the
//! predefined Japanese CMaps (Uni*-UCS2/UTF16, *-RKSJ, EUC, ISO-2022).
//!
//! Encrypted PDFs that open with the empty user password are read; one that
//! needs a user password is reported as encrypted, unread.

use crate::Budget;
use encoding_rs::{EUC_JP, SHIFT_JIS, UTF_16BE, WINDOWS_1252};
use lopdf::{Dictionary, Document, Object, ObjectId};
use std::collections::HashMap;

pub struct PdfText {
    pub text: String,
    /// A user password is needed to read it.
    pub encrypted: bool,
    /// Files embedded in it (the EmbeddedFiles tree, file attachment
    /// annotations), inspected as attachments of their own.
    pub embedded: Vec<crate::archive::Member>,
    /// Pages without a text layer that show a picture (scanned): for OCR.
    pub scanned: Vec<Scanned>,
}

/// A page that is a picture: the picture as a file tesseract reads (JPEG
/// as it is, raw samples as PNM), or why it cannot be.
pub struct Scanned {
    pub number: u32,
    pub image: Result<Vec<u8>, String>,
}

/// Per-stream decompression limit: a bomb stops here, not in our memory.
const MAX_STREAM: usize = 64 * 1024 * 1024;
/// Codes in unmappable fonts from which a PDF counts as holding text nobody
/// read.
const UNMAPPED_TEXT: usize = 8;
/// Nested form XObjects followed at most this deep.
const MAX_FORM_DEPTH: usize = 8;

pub fn extract(bytes: &[u8], budget: &Budget) -> Result<PdfText, String> {
    extract_limited(bytes, budget, usize::MAX)
}

/// [`extract`], handing over the pictures of at most `max_pictures` pages
/// (the rest are named in a Scanned entry that says so).
pub fn extract_limited(bytes: &[u8], budget: &Budget, max_pictures: usize) -> Result<PdfText, String> {
    let options = lopdf::LoadOptions {
        max_decompressed_size: Some(MAX_STREAM.min(budget.remaining_bytes().max(1) as usize)),
        ..Default::default()
    };
    let doc = Document::load_mem_with_options(bytes, options).map_err(|e| format!("PDF: {e}"))?;
    // lopdf opens a file with the empty user password by itself; when that
    // fails the objects stay encrypted (and the Encrypt dictionary may not
    // even resolve), so the raw bytes are asked too.
    let mentions_encrypt = bytes.windows(8).any(|w| w == b"/Encrypt");
    if (doc.is_encrypted() || mentions_encrypt) && !doc.was_encrypted() {
        return Ok(PdfText { text: String::new(), encrypted: true, embedded: Vec::new(), scanned: Vec::new() });
    }
    if doc.get_pages().is_empty() {
        return Err("PDF: no readable pages".into());
    }
    let mut out = String::new();
    let mut fonts: HashMap<ObjectId, Font> = HashMap::new();
    let mut scanned: Vec<Scanned> = Vec::new();
    // A picture every page shows (a logo in the template) is read once.
    let mut pictures_seen = std::collections::HashSet::new();
    let mut pages_with_pictures = 0usize;
    let mut unmapped = 0usize;
    for (number, page_id) in doc.get_pages() {
        if budget.out_of_time() {
            return Err("time budget exceeded".into());
        }
        let content = doc
            .get_page_content_with_limit(page_id, MAX_STREAM.min(budget.remaining_bytes() as usize))
            .map_err(|e| format!("PDF page: {e}"))?;
        budget.charge(content.len() as u64)?;
        let resources = page_resources(&doc, page_id);
        let mut page = Page {
            doc: &doc,
            fonts: &mut fonts,
            out: &mut out,
            budget,
            pending_space: false,
            inline: Vec::new(),
            unmapped: 0,
        };
        page.run(&content, &resources, 0)?;
        let inline = std::mem::take(&mut page.inline);
        unmapped += page.unmapped;
        // Every picture a page shows may carry text (a scan, a pasted
        // screenshot), whatever text the page has besides.
        let mut ids = Vec::new();
        page_pictures(&doc, &resources, &mut ids, 0);
        ids.retain(|id| pictures_seen.insert(*id));
        let inline: Vec<Option<Result<Vec<u8>, String>>> =
            inline.iter().map(|image| picture_of(&doc, image, budget)).collect();
        let inline: Vec<Result<Vec<u8>, String>> = inline.into_iter().flatten().collect();
        if !ids.is_empty() || !inline.is_empty() {
            pages_with_pictures += 1;
            if pages_with_pictures > max_pictures {
                scanned.push(Scanned {
                    number,
                    image: Err("a page with pictures past [inspect] ocr_max_pages: not read".into()),
                });
            } else {
                for id in ids {
                    if let Some(image) = doc
                        .get_object(id)
                        .ok()
                        .and_then(|o| o.as_stream().ok())
                        .and_then(|s| picture_of(&doc, s, budget))
                    {
                        scanned.push(Scanned { number, image });
                    }
                }
                scanned.extend(inline.into_iter().map(|image| Scanned { number, image }));
            }
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\u{c}');
    }
    // Beyond the pages: what a viewer shows in its panels.
    let mut extra = Extra { doc: &doc, out: String::new(), embedded: Vec::new(), budget, seen: Default::default() };
    extra.all()?;
    out.push_str(&extra.out);
    // A few unmapped codes are bullets and dingbats; more is text.
    if unmapped >= UNMAPPED_TEXT {
        scanned.push(Scanned {
            number: 0,
            image: Err(format!("{unmapped} characters in fonts without a Unicode map: not read")),
        });
    }
    Ok(PdfText { text: out, encrypted: false, embedded: extra.embedded, scanned })
}

/// The image XObjects a page's resources name, and those of the form
/// XObjects it draws (a few levels down).
fn page_pictures(doc: &Document, resources: &Dictionary, out: &mut Vec<ObjectId>, depth: usize) {
    let Some(xobjects) = sub_dict(doc, resources, b"XObject") else { return };
    for (_, o) in xobjects.iter() {
        let Ok(id) = o.as_reference() else { continue };
        let Ok(stream) = doc.get_object(id).and_then(|o| o.as_stream()) else { continue };
        match stream.dict.get(b"Subtype").and_then(|t| t.as_name()) {
            Ok(b"Image") => out.push(id),
            Ok(b"Form") if depth < MAX_FORM_DEPTH => {
                if let Some(r) = sub_dict(doc, &stream.dict, b"Resources") {
                    page_pictures(doc, r, out, depth + 1);
                }
            }
            _ => {}
        }
    }
}

/// An inline picture's dictionary in the image XObject's long names
/// (W → Width, CS G → DeviceGray, F Fl → FlateDecode…).
fn inline_as_xobject(image: &lopdf::Stream) -> lopdf::Stream {
    let long = |k: &[u8]| -> Vec<u8> {
        match k {
            b"W" => b"Width".to_vec(),
            b"H" => b"Height".to_vec(),
            b"BPC" => b"BitsPerComponent".to_vec(),
            b"CS" => b"ColorSpace".to_vec(),
            b"F" => b"Filter".to_vec(),
            b"IM" => b"ImageMask".to_vec(),
            b"DP" => b"DecodeParms".to_vec(),
            other => other.to_vec(),
        }
    };
    let value = |v: &Object| -> Object {
        let name = |n: &[u8]| -> Vec<u8> {
            match n {
                b"G" => b"DeviceGray".to_vec(),
                b"RGB" => b"DeviceRGB".to_vec(),
                b"CMYK" => b"DeviceCMYK".to_vec(),
                b"Fl" => b"FlateDecode".to_vec(),
                b"DCT" => b"DCTDecode".to_vec(),
                b"CCF" => b"CCITTFaxDecode".to_vec(),
                b"AHx" => b"ASCIIHexDecode".to_vec(),
                b"A85" => b"ASCII85Decode".to_vec(),
                b"LZW" => b"LZWDecode".to_vec(),
                b"RL" => b"RunLengthDecode".to_vec(),
                other => other.to_vec(),
            }
        };
        match v {
            Object::Name(n) => Object::Name(name(n)),
            Object::Array(a) => Object::Array(
                a.iter().map(|o| if let Object::Name(n) = o { Object::Name(name(n)) } else { o.clone() }).collect(),
            ),
            other => other.clone(),
        }
    };
    let mut dict = Dictionary::new();
    for (k, v) in image.dict.iter() {
        dict.set(long(k), value(v));
    }
    dict.set("Subtype", Object::Name(b"Image".to_vec()));
    lopdf::Stream::new(dict, image.content.clone())
}

/// A picture as a file for OCR (JPEG as it is, raw samples as PNM), or
/// why it cannot be; None for one too small to carry text (or a mask).
fn picture_of(doc: &Document, best: &lopdf::Stream, budget: &Budget) -> Option<Result<Vec<u8>, String>> {
    let int = |d: &Dictionary, k: &[u8]| d.get(k).ok().map(|o| deref(doc, o)).and_then(|o| o.as_i64().ok());
    if best.dict.get(b"ImageMask").and_then(|m| m.as_bool()).unwrap_or(false) {
        return None;
    }
    let size = (int(&best.dict, b"Width").unwrap_or(0), int(&best.dict, b"Height").unwrap_or(0));
    if size.0 > 0 && size.1 > 0 && !crate::ocr::may_carry_text(Some((size.0 as u32, size.1 as u32))) {
        return None;
    }
    let filters: Vec<Vec<u8>> = best.filters().map(|f| f.iter().map(|x| x.to_vec()).collect()).unwrap_or_default();
    let (w, h) = (int(&best.dict, b"Width").unwrap_or(0), int(&best.dict, b"Height").unwrap_or(0));
    if w <= 0 || h <= 0 || w > 100_000 || h > 100_000 {
        return Some(Err("a scanned page whose picture has no size".into()));
    }
    let last = filters.last().map(|f| f.as_slice());
    Some(match last {
        Some(b"DCTDecode") if filters.len() == 1 => Ok(best.content.clone()),
        Some(b"JPXDecode" | b"JBIG2Decode" | b"CCITTFaxDecode") | Some(b"DCTDecode") => {
            Err(format!("a scanned page in {} is not read", String::from_utf8_lossy(last.unwrap_or_default())))
        }
        _ => {
            let bits = int(&best.dict, b"BitsPerComponent").unwrap_or(8);
            let space = best.dict.get(b"ColorSpace").ok().map(|o| deref(doc, o));
            let components = match space.and_then(|s| s.as_name().ok()) {
                Some(b"DeviceGray") => Some(1),
                Some(b"DeviceRGB") => Some(3),
                _ => space
                    .and_then(|s| s.as_array().ok())
                    .and_then(|a| a.get(1))
                    .and_then(|icc| deref(doc, icc).as_stream().ok())
                    .and_then(|icc| int(&icc.dict, b"N"))
                    .filter(|n| *n == 1 || *n == 3)
                    .map(|n| n as u8),
            };
            match (bits, components) {
                (8, Some(c)) => {
                    let limit = MAX_STREAM.min(budget.remaining_bytes() as usize);
                    let samples = if filters.is_empty() {
                        Ok(best.content.clone())
                    } else {
                        best.decompressed_content_with_limit(limit).map_err(|e| e.to_string())
                    };
                    samples.map_err(|e| format!("a scanned page's picture does not decompress: {e}")).and_then(|data| {
                        budget.charge(data.len() as u64)?;
                        crate::ocr::pnm(w as u32, h as u32, c, &data)
                            .ok_or_else(|| "a scanned page's picture is cut short".to_string())
                    })
                }
                _ => Err("a scanned page in a colour format that is not read".into()),
            }
        }
    })
}

/// A PDF text string: UTF-16BE after its BOM, UTF-8 after its BOM, else
/// PDFDocEncoding (Latin-1 for the characters that matter here).
fn text_string(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    bytes.iter().map(|b| *b as char).collect()
}

/// Annotations, form fields (AcroForm and XFA), the information dictionary,
/// XMP metadata, bookmarks, and embedded files.
struct Extra<'a> {
    doc: &'a Document,
    out: String,
    embedded: Vec<crate::archive::Member>,
    budget: &'a Budget,
    /// Objects already walked: a loop in a tree ends here.
    seen: std::collections::HashSet<ObjectId>,
}

/// How many nodes of a tree (fields, outlines, name trees) are walked.
const MAX_NODES: usize = 10_000;

impl Extra<'_> {
    fn all(&mut self) -> Result<(), String> {
        let doc = self.doc;
        // One cap over every page's annotations (pages may share one list).
        let mut left = MAX_NODES;
        for (_, page_id) in doc.get_pages() {
            if self.budget.out_of_time() {
                return Err("time budget exceeded".into());
            }
            if let Ok(page) = doc.get_dictionary(page_id)
                && let Ok(annots) = page.get(b"Annots").map(|o| deref(doc, o))
                && let Ok(list) = annots.as_array()
            {
                for a in list.iter() {
                    if left == 0 {
                        return Err(format!("more than {MAX_NODES} annotations: the rest not read"));
                    }
                    left -= 1;
                    if let Ok(id) = a.as_reference()
                        && !self.seen.insert(id)
                    {
                        continue;
                    }
                    if let Ok(d) = deref(doc, a).as_dict() {
                        self.annotation(d)?;
                    }
                }
            }
        }
        if let Some(info) = sub_dict(doc, &doc.trailer, b"Info") {
            for key in [&b"Title"[..], b"Author", b"Subject", b"Keywords", b"Creator", b"Producer"] {
                self.string_of(info, key);
            }
        }
        let Ok(catalog) = doc.catalog() else { return Ok(()) };
        if let Ok(meta) = catalog.get(b"Metadata").map(|o| deref(doc, o))
            && let Ok(stream) = meta.as_stream()
        {
            let xml = self.stream_bytes(stream)?;
            self.xml_values(&xml);
        }
        if let Some(form) = sub_dict(doc, catalog, b"AcroForm") {
            if let Ok(fields) = form.get(b"Fields").map(|o| deref(doc, o)).and_then(|o| o.as_array()) {
                let mut left = MAX_NODES;
                for f in fields.clone() {
                    self.field(&f, &mut left, 0)?;
                }
            }
            // XFA: one stream, or [name stream name stream …].
            if let Ok(xfa) = form.get(b"XFA").map(|o| deref(doc, o)) {
                let streams: Vec<&Object> = match xfa.as_array() {
                    Ok(a) => a.iter().skip(1).step_by(2).collect(),
                    Err(_) => vec![xfa],
                };
                for s in streams {
                    if let Ok(stream) = deref(doc, s).as_stream() {
                        let xml = self.stream_bytes(stream)?;
                        self.xml_values(&xml);
                    }
                }
            }
        }
        if let Some(outlines) = sub_dict(doc, catalog, b"Outlines") {
            let mut left = MAX_NODES;
            self.outline(outlines.get(b"First").ok().cloned(), &mut left, 0);
        }
        if let Some(names) = sub_dict(doc, catalog, b"Names")
            && let Some(tree) = sub_dict(doc, names, b"EmbeddedFiles")
        {
            let mut left = MAX_NODES;
            self.name_tree(tree, &mut left, 0)?;
        }
        Ok(())
    }

    fn push(&mut self, text: &str) {
        let text = text.trim();
        // Paid for like decompressed bytes: what is kept is bounded.
        if !text.is_empty() && self.budget.charge(text.len() as u64).is_ok() {
            self.out.push_str(text);
            self.out.push('\n');
        }
    }

    fn string_of(&mut self, d: &Dictionary, key: &[u8]) {
        if let Ok(v) = d.get(key).map(|o| deref(self.doc, o))
            && let Ok(s) = v.as_str()
        {
            let text = text_string(s);
            self.push(&text);
        } else if let Ok(v) = d.get(key).map(|o| deref(self.doc, o))
            && let Ok(n) = v.as_name()
        {
            let text = String::from_utf8_lossy(n).into_owned();
            self.push(&text);
        }
    }

    fn stream_bytes(&self, stream: &lopdf::Stream) -> Result<Vec<u8>, String> {
        let limit = MAX_STREAM.min(self.budget.remaining_bytes() as usize);
        let data = stream
            .decompressed_content_with_limit(limit)
            .or_else(|_| {
                if stream.filters().map(|f| f.is_empty()).unwrap_or(true) {
                    Ok(stream.content.clone())
                } else {
                    Err(())
                }
            })
            .map_err(|_| "PDF: a stream that does not decompress".to_string())?;
        self.budget.charge(data.len() as u64)?;
        Ok(data)
    }

    /// The text of an XML packet (XMP, XFA datasets): every element's text.
    fn xml_values(&mut self, xml: &[u8]) {
        let mut reader = quick_xml::Reader::from_reader(xml);
        while let Ok(event) = reader.read_event() {
            match event {
                quick_xml::events::Event::Text(t) => {
                    let text = t.xml10_content().into_owned();
                    self.push(&text);
                }
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
    }

    /// Text, free text, stamps, popups, widgets…: their contents, author
    /// and rich text; a file attachment's file.
    fn annotation(&mut self, a: &Dictionary) -> Result<(), String> {
        for key in [&b"Contents"[..], b"T", b"RC", b"Subj"] {
            self.string_of(a, key);
        }
        if a.get(b"Subtype").and_then(|s| s.as_name()).is_ok_and(|n| n == b"FileAttachment")
            && let Some(fs) = sub_dict(self.doc, a, b"FS")
        {
            let fs = fs.clone();
            self.file_spec(&fs)?;
        }
        Ok(())
    }

    fn field(&mut self, f: &Object, left: &mut usize, depth: usize) -> Result<(), String> {
        if *left == 0 || depth > 32 {
            return Ok(());
        }
        *left -= 1;
        if let Ok(id) = f.as_reference()
            && !self.seen.insert(id)
        {
            return Ok(());
        }
        let Ok(d) = deref(self.doc, f).as_dict() else { return Ok(()) };
        for key in [&b"T"[..], b"TU", b"V"] {
            self.string_of(d, key);
        }
        if let Ok(kids) = d.get(b"Kids").map(|o| deref(self.doc, o)).and_then(|o| o.as_array()) {
            for k in kids.clone() {
                self.field(&k, left, depth + 1)?;
            }
        }
        Ok(())
    }

    fn outline(&mut self, mut next: Option<Object>, left: &mut usize, depth: usize) {
        while let Some(item) = next.take() {
            if *left == 0 || depth > 32 {
                return;
            }
            *left -= 1;
            if let Ok(id) = item.as_reference()
                && !self.seen.insert(id)
            {
                return;
            }
            let Ok(d) = deref(self.doc, &item).as_dict() else { return };
            let d = d.clone();
            self.string_of(&d, b"Title");
            self.outline(d.get(b"First").ok().cloned(), left, depth + 1);
            next = d.get(b"Next").ok().cloned();
        }
    }

    fn name_tree(&mut self, node: &Dictionary, left: &mut usize, depth: usize) -> Result<(), String> {
        if *left == 0 || depth > 32 {
            return Ok(());
        }
        *left -= 1;
        if let Ok(names) = node.get(b"Names").map(|o| deref(self.doc, o)).and_then(|o| o.as_array()) {
            for spec in names.clone().iter().skip(1).step_by(2) {
                if let Ok(fs) = deref(self.doc, spec).as_dict() {
                    let fs = fs.clone();
                    self.file_spec(&fs)?;
                }
            }
        }
        if let Ok(kids) = node.get(b"Kids").map(|o| deref(self.doc, o)).and_then(|o| o.as_array()) {
            for k in kids.clone() {
                if let Ok(id) = k.as_reference()
                    && !self.seen.insert(id)
                {
                    continue;
                }
                if let Ok(d) = deref(self.doc, &k).as_dict() {
                    let d = d.clone();
                    self.name_tree(&d, left, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    /// An embedded file (`/EF /F`), under its own name.
    fn file_spec(&mut self, fs: &Dictionary) -> Result<(), String> {
        let name = [&b"UF"[..], b"F"]
            .iter()
            .find_map(|k| fs.get(k).ok().map(|o| deref(self.doc, o)).and_then(|o| o.as_str().ok()).map(text_string))
            .unwrap_or_else(|| "embedded".into());
        let name = name.rsplit(['/', '\\']).next().unwrap_or("embedded").to_string();
        self.push(&name);
        let Some(ef) = sub_dict(self.doc, fs, b"EF") else { return Ok(()) };
        let Ok(stream) = ef.get(b"F").map(|o| deref(self.doc, o)).and_then(|o| o.as_stream()) else { return Ok(()) };
        let member = match self.stream_bytes(stream) {
            Ok(data) => crate::archive::Member { name, data, encrypted: false, error: None },
            Err(e) => crate::archive::Member { name, data: Vec::new(), encrypted: false, error: Some(e) },
        };
        self.embedded.push(member);
        Ok(())
    }
}

/// The page's resources, nearest first: a key the page sets hides the same
/// key inherited from the page tree. (lopdf's `Dictionary::extend` would
/// turn duplicates into arrays.)
fn page_resources(doc: &Document, page_id: ObjectId) -> Dictionary {
    let mut merged = Dictionary::new();
    let mut add = |d: &Dictionary| {
        for (k, v) in d.iter() {
            if !merged.has(k) {
                merged.set(k.clone(), v.clone());
            }
        }
    };
    if let Ok((direct, ids)) = doc.get_page_resources(page_id) {
        if let Some(d) = direct {
            add(d);
        }
        for id in ids {
            if let Ok(d) = doc.get_dictionary(id) {
                add(d);
            }
        }
    }
    merged
}

fn deref<'a>(doc: &'a Document, obj: &'a Object) -> &'a Object {
    doc.dereference(obj).map(|(_, o)| o).unwrap_or(obj)
}

fn sub_dict<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Dictionary> {
    dict.get(key).ok().map(|o| deref(doc, o)).and_then(|o| o.as_dict().ok())
}

struct Page<'a> {
    doc: &'a Document,
    fonts: &'a mut HashMap<ObjectId, Font>,
    out: &'a mut String,
    budget: &'a Budget,
    pending_space: bool,
    /// Inline pictures (BI … ID … EI) the page draws, for OCR.
    inline: Vec<lopdf::Stream>,
    /// Codes shown in a font with no way to Unicode (Identity-H without a
    /// ToUnicode map): text drawn that nobody read.
    unmapped: usize,
}

impl Page<'_> {
    fn run(&mut self, content: &[u8], resources: &Dictionary, depth: usize) -> Result<(), String> {
        let ops = lopdf::content::Content::decode(content).map_err(|e| format!("PDF content: {e}"))?;
        let font_dict = sub_dict(self.doc, resources, b"Font");
        let mut font: Option<ObjectId> = None;
        let mut inline_font: Option<Font> = None;
        let mut line_y: Option<f32> = None;
        let mut ty = 0f32;
        for (n, op) in ops.operations.iter().enumerate() {
            if n % 4096 == 4095 && self.budget.out_of_time() {
                return Err("time budget exceeded".into());
            }
            let num = |i: usize| op.operands.get(i).and_then(|o| o.as_float().ok()).unwrap_or(0.0);
            match op.operator.as_str() {
                "BI" => {
                    if let [Object::Stream(image)] = op.operands.as_slice()
                        && self.inline.len() < 64
                    {
                        self.inline.push(inline_as_xobject(image));
                    }
                }
                "BT" => {}
                "Tf" => {
                    let name = op.operands.first().and_then(|o| o.as_name().ok()).unwrap_or(b"");
                    let obj = font_dict.and_then(|d| d.get(name).ok());
                    match obj {
                        Some(Object::Reference(id)) => {
                            if !self.fonts.contains_key(id) {
                                let f =
                                    self.doc.get_dictionary(*id).map(|d| Font::load(self.doc, d)).unwrap_or_default();
                                self.fonts.insert(*id, f);
                            }
                            font = Some(*id);
                            inline_font = None;
                        }
                        Some(Object::Dictionary(d)) => {
                            font = None;
                            inline_font = Some(Font::load(self.doc, d));
                        }
                        _ => {
                            font = None;
                            inline_font = None;
                        }
                    }
                }
                "Td" | "TD" => {
                    ty += num(1);
                    if num(1).abs() > 0.01 {
                        self.newline();
                    } else if num(0) > 0.0 {
                        self.pending_space = true;
                    }
                }
                "Tm" => {
                    let y = num(5);
                    if line_y.is_some_and(|ly| (ly - y).abs() > 0.5) {
                        self.newline();
                    } else if line_y.is_some() {
                        self.pending_space = true;
                    }
                    line_y = Some(y);
                    ty = 0.0;
                }
                "T*" => self.newline(),
                "Tj" | "'" | "\"" | "TJ" => {
                    if op.operator == "'" || op.operator == "\"" {
                        self.newline();
                    }
                    let f = match (&inline_font, font) {
                        (Some(f), _) => f,
                        (None, Some(id)) => match self.fonts.get(&id) {
                            Some(f) => f,
                            None => continue,
                        },
                        _ => &Font::default(),
                    };
                    let mut text = String::new();
                    for operand in &op.operands {
                        match operand {
                            Object::String(bytes, _) => self.unmapped += f.decode(bytes, &mut text),
                            Object::Array(items) => {
                                for item in items {
                                    match item {
                                        Object::String(bytes, _) => self.unmapped += f.decode(bytes, &mut text),
                                        // A wide negative kern is a word gap in Latin text.
                                        Object::Integer(_) | Object::Real(_)
                                            if item.as_float().unwrap_or(0.0) < -200.0 && !text.ends_with(' ') =>
                                        {
                                            text.push(' ');
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    self.push(&text);
                }
                "Do" if depth < MAX_FORM_DEPTH => {
                    let name = op.operands.first().and_then(|o| o.as_name().ok()).unwrap_or(b"");
                    let Some(xobjects) = sub_dict(self.doc, resources, b"XObject") else { continue };
                    let Some(stream) =
                        xobjects.get(name).ok().map(|o| deref(self.doc, o)).and_then(|o| o.as_stream().ok())
                    else {
                        continue;
                    };
                    if stream.dict.get(b"Subtype").and_then(|s| s.as_name()).ok() != Some(b"Form") {
                        continue;
                    }
                    let data = stream
                        .decompressed_content_with_limit(MAX_STREAM.min(self.budget.remaining_bytes() as usize))
                        .map_err(|e| format!("PDF form: {e}"))?;
                    self.budget.charge(data.len() as u64)?;
                    let inner =
                        sub_dict(self.doc, &stream.dict, b"Resources").cloned().unwrap_or_else(|| resources.clone());
                    self.run(&data, &inner, depth + 1)?;
                }
                _ => {}
            }
        }
        let _ = ty;
        Ok(())
    }

    fn newline(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        self.pending_space = false;
    }

    fn push(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.pending_space {
            let prev_ascii = self.out.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
            let next_ascii = text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
            if prev_ascii && next_ascii {
                self.out.push(' ');
            }
            self.pending_space = false;
        }
        self.out.push_str(text);
    }
}

/// How a font's byte codes become text.
#[derive(Default)]
struct Font {
    /// Bytes per code for composite fonts (1 for simple fonts).
    code_bytes: Vec<CodeSpace>,
    to_unicode: HashMap<u32, String>,
    /// Simple-font table for codes the ToUnicode map does not cover.
    simple: Option<Box<[Option<char>; 256]>>,
    composite: Option<Predefined>,
    /// A CID-keyed font of the Adobe-Japan1 collection: CIDs can be mapped
    /// without a ToUnicode map.
    japan1: bool,
}

/// CID → Unicode for Adobe-Japan1 (see `data/ADOBE-CMAP-LICENSE`).
static ADOBE_JAPAN1: &[u8] = include_bytes!("../data/adobe-japan1-ucs2.bin");

fn japan1_char(cid: u32) -> Option<char> {
    let i = cid as usize * 4;
    let bytes = ADOBE_JAPAN1.get(i..i + 4)?;
    let cp = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    (cp != 0).then(|| char::from_u32(cp)).flatten()
}

#[derive(Clone, Copy)]
enum Predefined {
    /// Codes are CIDs (Identity-H/V) with no way to Unicode but ToUnicode.
    Identity,
    Utf16,
    ShiftJis,
    EucJp,
    /// ISO-2022-JP without escapes: JIS X 0208 rows as two 7-bit bytes.
    Jis,
}

impl Font {
    fn load(doc: &Document, dict: &Dictionary) -> Font {
        let mut font = Font::default();
        let subtype = dict.get(b"Subtype").and_then(|s| s.as_name()).unwrap_or(b"");
        if let Ok(stream) = dict.get(b"ToUnicode").map(|o| deref(doc, o)).and_then(|o| o.as_stream())
            && let Ok(data) = stream.decompressed_content_with_limit(4 * 1024 * 1024)
        {
            let (spaces, map) = parse_cmap(&data);
            font.to_unicode = map;
            font.code_bytes = spaces;
        }
        if subtype == b"Type0" {
            font.japan1 = dict
                .get(b"DescendantFonts")
                .map(|o| deref(doc, o))
                .and_then(|o| o.as_array())
                .ok()
                .and_then(|a| a.first())
                .map(|o| deref(doc, o))
                .and_then(|o| o.as_dict().ok())
                .and_then(|d| sub_dict(doc, d, b"CIDSystemInfo"))
                .and_then(|info| info.get(b"Ordering").ok())
                .map(|o| deref(doc, o))
                .and_then(|o| o.as_str().ok())
                .is_some_and(|ordering| ordering == b"Japan1");
            let encoding = dict.get(b"Encoding").map(|o| deref(doc, o));
            let name = match encoding {
                Ok(Object::Name(n)) => String::from_utf8_lossy(n).into_owned(),
                Ok(Object::Stream(s)) => {
                    // An embedded CMap: its codespace tells the code widths.
                    if font.code_bytes.is_empty()
                        && let Ok(data) = s.decompressed_content_with_limit(4 * 1024 * 1024)
                    {
                        font.code_bytes = parse_cmap(&data).0;
                    }
                    s.dict
                        .get(b"CMapName")
                        .and_then(|n| n.as_name())
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .unwrap_or_default()
                }
                _ => String::new(),
            };
            font.composite = Some(if name.starts_with("Uni") && (name.contains("UCS2") || name.contains("UTF16")) {
                Predefined::Utf16
            } else if name.contains("RKSJ") {
                Predefined::ShiftJis
            } else if name.contains("EUC") {
                Predefined::EucJp
            } else if name == "H" || name == "V" {
                Predefined::Jis
            } else {
                Predefined::Identity
            });
            if font.code_bytes.is_empty() {
                font.code_bytes = match font.composite {
                    // Shift_JIS and EUC mix one- and two-byte codes.
                    Some(Predefined::ShiftJis) => {
                        vec![(0x00, 0x80, 1), (0x81, 0x9F, 2), (0xA0, 0xDF, 1), (0xE0, 0xFC, 2)]
                    }
                    Some(Predefined::EucJp) => vec![(0x00, 0x80, 1), (0x8E, 0x8E, 2), (0xA1, 0xFE, 2)],
                    _ => vec![(0x00, 0xFF, 2)],
                };
            }
        } else {
            font.simple = Some(simple_table(doc, dict));
        }
        font
    }

    /// Width in bytes of the code starting with `first`.
    fn width(&self, first: u8) -> usize {
        if self.composite.is_none() && self.code_bytes.is_empty() {
            return 1;
        }
        self.code_bytes
            .iter()
            .find(|(lo, hi, n)| {
                let b = u32::from(first);
                let (lo, hi) = if *n == 1 { (*lo, *hi) } else { (*lo >> ((n - 1) * 8), *hi >> ((n - 1) * 8)) };
                (lo..=hi).contains(&b)
            })
            .map(|(_, _, n)| *n)
            .unwrap_or(if self.composite.is_some() { 2 } else { 1 })
    }

    /// Appends the text of `bytes`; returns how many codes had no way to
    /// Unicode.
    fn decode(&self, bytes: &[u8], out: &mut String) -> usize {
        let mut lost = 0;
        let mut i = 0;
        while i < bytes.len() {
            let n = self.width(bytes[i]).clamp(1, 4).min(bytes.len() - i);
            let code = bytes[i..i + n].iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            let chunk = &bytes[i..i + n];
            i += n;
            if let Some(s) = self.to_unicode.get(&code) {
                out.push_str(s);
                continue;
            }
            match (self.composite, &self.simple) {
                (Some(Predefined::Utf16), _) => out.push_str(&UTF_16BE.decode_without_bom_handling(chunk).0),
                (Some(Predefined::ShiftJis), _) => out.push_str(&SHIFT_JIS.decode_without_bom_handling(chunk).0),
                (Some(Predefined::EucJp), _) => out.push_str(&EUC_JP.decode_without_bom_handling(chunk).0),
                (Some(Predefined::Jis), _) => {
                    let euc: Vec<u8> = chunk.iter().map(|b| b | 0x80).collect();
                    out.push_str(&EUC_JP.decode_without_bom_handling(&euc).0);
                }
                (Some(Predefined::Identity), _) if self.japan1 => match japan1_char(code) {
                    Some(c) => out.push(c),
                    None => lost += 1,
                },
                (Some(Predefined::Identity), _) => lost += 1,
                (None, Some(table)) => {
                    if let Some(c) = table[chunk[0] as usize] {
                        out.push(c);
                    }
                }
                (None, None) => out.push(chunk[0] as char),
            }
        }
        lost
    }
}

/// Codes of a simple font: its base encoding, then Differences.
fn simple_table(doc: &Document, dict: &Dictionary) -> Box<[Option<char>; 256]> {
    let mut table: Box<[Option<char>; 256]> = Box::new([None; 256]);
    let encoding = dict.get(b"Encoding").map(|o| deref(doc, o));
    let base = match &encoding {
        Ok(Object::Name(n)) => n.as_slice(),
        Ok(Object::Dictionary(d)) => d.get(b"BaseEncoding").and_then(|b| b.as_name()).unwrap_or(b"StandardEncoding"),
        _ => b"StandardEncoding",
    };
    let mac = encoding_rs::Encoding::for_label(b"macintosh").unwrap_or(WINDOWS_1252);
    for code in 0u8..=255 {
        table[code as usize] = match base {
            b"MacRomanEncoding" => mac.decode_without_bom_handling(&[code]).0.chars().next(),
            _ => WINDOWS_1252.decode_without_bom_handling(&[code]).0.chars().next(),
        }
        .filter(|c| !c.is_control() || *c == '\t');
    }
    if let Ok(Object::Dictionary(d)) = encoding
        && let Ok(diffs) = d.get(b"Differences").and_then(|o| o.as_array())
    {
        let mut code = 0usize;
        for item in diffs {
            match item {
                Object::Integer(n) => code = (*n).clamp(0, 255) as usize,
                Object::Name(name) => {
                    if code < 256 {
                        table[code] = glyph_char(name);
                    }
                    code += 1;
                }
                _ => {}
            }
        }
    }
    table
}

/// Unicode for a glyph name: `uniXXXX`, `uXXXX`, single letters, and the
/// common Adobe Glyph List names.
fn glyph_char(name: &[u8]) -> Option<char> {
    let name = std::str::from_utf8(name).ok()?;
    let base = name.split('.').next().unwrap_or(name);
    if let Some(hex) = base.strip_prefix("uni").filter(|h| h.len() == 4) {
        return u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
    }
    if let Some(hex) = base.strip_prefix('u').filter(|h| (4..=6).contains(&h.len()))
        && let Some(c) = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
    {
        return Some(c);
    }
    if base.len() == 1 {
        return base.chars().next();
    }
    const NAMES: &[(&str, char)] = &[
        ("space", ' '),
        ("exclam", '!'),
        ("quotedbl", '"'),
        ("numbersign", '#'),
        ("dollar", '$'),
        ("percent", '%'),
        ("ampersand", '&'),
        ("quotesingle", '\''),
        ("quoteright", '’'),
        ("quoteleft", '‘'),
        ("parenleft", '('),
        ("parenright", ')'),
        ("asterisk", '*'),
        ("plus", '+'),
        ("comma", ','),
        ("hyphen", '-'),
        ("minus", '−'),
        ("period", '.'),
        ("slash", '/'),
        ("zero", '0'),
        ("one", '1'),
        ("two", '2'),
        ("three", '3'),
        ("four", '4'),
        ("five", '5'),
        ("six", '6'),
        ("seven", '7'),
        ("eight", '8'),
        ("nine", '9'),
        ("colon", ':'),
        ("semicolon", ';'),
        ("less", '<'),
        ("equal", '='),
        ("greater", '>'),
        ("question", '?'),
        ("at", '@'),
        ("bracketleft", '['),
        ("backslash", '\\'),
        ("bracketright", ']'),
        ("asciicircum", '^'),
        ("underscore", '_'),
        ("grave", '`'),
        ("braceleft", '{'),
        ("bar", '|'),
        ("braceright", '}'),
        ("asciitilde", '~'),
        ("bullet", '•'),
        ("endash", '–'),
        ("emdash", '—'),
        ("quotedblleft", '“'),
        ("quotedblright", '”'),
        ("yen", '¥'),
        ("fi", 'ﬁ'),
        ("fl", 'ﬂ'),
        ("ellipsis", '…'),
        ("copyright", '©'),
        ("registered", '®'),
        ("degree", '°'),
        ("section", '§'),
        ("paragraph", '¶'),
        ("nbspace", ' '),
    ];
    NAMES.iter().find(|(n, _)| *n == base).map(|(_, c)| *c)
}

/// A codespace range: lowest code, highest code, bytes per code.
type CodeSpace = (u32, u32, usize);

/// A CMap's codespace ranges `(low, high, bytes)` and its code → Unicode
/// entries (bfchar, bfrange).
fn parse_cmap(data: &[u8]) -> (Vec<CodeSpace>, HashMap<u32, String>) {
    let tokens = cmap_tokens(data);
    let mut spaces = Vec::new();
    let mut map = HashMap::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Tok::Word(w) if w == "begincodespacerange" => {
                i += 1;
                while i + 1 < tokens.len() {
                    match (&tokens[i], &tokens[i + 1]) {
                        (Tok::Hex(lo), Tok::Hex(hi)) => {
                            spaces.push((be(lo), be(hi), lo.len().max(1)));
                            i += 2;
                        }
                        _ => break,
                    }
                }
            }
            Tok::Word(w) if w == "beginbfchar" => {
                i += 1;
                while i + 1 < tokens.len() {
                    match (&tokens[i], &tokens[i + 1]) {
                        (Tok::Hex(src), Tok::Hex(dst)) => {
                            map.insert(be(src), utf16(dst));
                            i += 2;
                        }
                        (Tok::Hex(src), Tok::Name(n)) => {
                            if let Some(c) = glyph_char(n.as_bytes()) {
                                map.insert(be(src), c.to_string());
                            }
                            i += 2;
                        }
                        _ => break,
                    }
                }
            }
            Tok::Word(w) if w == "beginbfrange" => {
                i += 1;
                while i + 2 < tokens.len() {
                    let (Tok::Hex(lo), Tok::Hex(hi)) = (&tokens[i], &tokens[i + 1]) else { break };
                    let (lo, hi) = (be(lo), be(hi));
                    if hi < lo || hi - lo > 0xFFFF {
                        i += 3;
                        continue;
                    }
                    match &tokens[i + 2] {
                        Tok::Hex(dst) => {
                            let mut units: Vec<u16> =
                                dst.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
                            for code in lo..=hi {
                                map.insert(code, String::from_utf16_lossy(&units));
                                if let Some(last) = units.last_mut() {
                                    *last = last.wrapping_add(1);
                                }
                            }
                            i += 3;
                        }
                        Tok::ArrayStart => {
                            let mut code = lo;
                            i += 3;
                            while i < tokens.len() {
                                match &tokens[i] {
                                    Tok::Hex(dst) => {
                                        map.insert(code, utf16(dst));
                                        code += 1;
                                        i += 1;
                                    }
                                    Tok::ArrayEnd => {
                                        i += 1;
                                        break;
                                    }
                                    _ => i += 1,
                                }
                            }
                        }
                        _ => i += 3,
                    }
                }
            }
            _ => i += 1,
        }
    }
    (spaces, map)
}

fn be(bytes: &[u8]) -> u32 {
    bytes.iter().take(4).fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
    String::from_utf16_lossy(&units)
}

enum Tok {
    Hex(Vec<u8>),
    Word(String),
    Name(String),
    ArrayStart,
    ArrayEnd,
}

fn cmap_tokens(data: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'<' if data.get(i + 1) != Some(&b'<') => {
                let end = data[i..].iter().position(|&b| b == b'>').map(|p| i + p).unwrap_or(data.len());
                let hex: Vec<u8> = data[i + 1..end].iter().copied().filter(|b| b.is_ascii_hexdigit()).collect();
                let bytes = hex
                    .chunks(2)
                    .map(|c| {
                        let s = std::str::from_utf8(c).unwrap_or("0");
                        let s = if s.len() == 1 { format!("{s}0") } else { s.to_string() };
                        u8::from_str_radix(&s, 16).unwrap_or(0)
                    })
                    .collect();
                out.push(Tok::Hex(bytes));
                i = end + 1;
            }
            b'[' => {
                out.push(Tok::ArrayStart);
                i += 1;
            }
            b']' => {
                out.push(Tok::ArrayEnd);
                i += 1;
            }
            b'%' => {
                while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
            }
            b'/' => {
                let start = i + 1;
                i += 1;
                while i < data.len() && !b" \t\r\n/<>[]()".contains(&data[i]) {
                    i += 1;
                }
                out.push(Tok::Name(String::from_utf8_lossy(&data[start..i]).into_owned()));
            }
            b if b.is_ascii_alphabetic() => {
                let start = i;
                while i < data.len() && data[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                out.push(Tok::Word(String::from_utf8_lossy(&data[start..i]).into_owned()));
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_unicode_cmap() {
        let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap
            1 begincodespacerange <0000> <FFFF> endcodespacerange
            2 beginbfchar <0003> <0020> <0010> <793E> endbfchar
            2 beginbfrange <0020> <0022> <5916> <0030> <0031> [<79D8> <D83DDE00>] endbfrange
            endcmap";
        let (spaces, map) = parse_cmap(cmap);
        assert_eq!(spaces, vec![(0, 0xFFFF, 2)]);
        assert_eq!(map[&0x10], "社");
        assert_eq!(map[&0x20], "外");
        assert_eq!(map[&0x22], "\u{5918}");
        assert_eq!(map[&0x30], "秘");
        assert_eq!(map[&0x31], "😀");
    }

    #[test]
    fn glyph_names() {
        assert_eq!(glyph_char(b"uni793E"), Some('社'));
        assert_eq!(glyph_char(b"A"), Some('A'));
        assert_eq!(glyph_char(b"zero"), Some('0'));
        assert_eq!(glyph_char(b"a.sc"), Some('a'));
        assert_eq!(glyph_char(b"nosuchglyph"), None);
    }
}
