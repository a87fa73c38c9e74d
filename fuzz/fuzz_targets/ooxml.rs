//! Office files: the input is the main XML part of a docx, xlsx or pptx
//! (chosen by the first byte), zipped with the parts around it, so the
//! fuzzer spends its time in our XML readers rather than in zip headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;

fn inspector() -> &'static tomare_inspect::Inspector {
    static I: std::sync::OnceLock<tomare_inspect::Inspector> = std::sync::OnceLock::new();
    I.get_or_init(|| tomare_inspect::Inspector::new(&tomare_config::Config::default()).unwrap())
}

const CT: &str = r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, xml)) = data.split_first() else { return };
    let (name, parts): (&str, &[&str]) = match kind % 3 {
        0 => ("a.docx", &["word/document.xml", "word/comments.xml", "docProps/core.xml"]),
        1 => ("a.xlsx", &["xl/sharedStrings.xml", "xl/worksheets/sheet1.xml", "xl/workbook.xml"]),
        _ => ("a.pptx", &["ppt/slides/slide1.xml", "ppt/notesSlides/notesSlide1.xml", "docProps/app.xml"]),
    };
    let part = parts[(kind as usize / 3) % parts.len()];
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("[Content_Types].xml", opts).unwrap();
        zip.write_all(CT.as_bytes()).unwrap();
        zip.start_file(part, opts).unwrap();
        zip.write_all(xml).unwrap();
        zip.finish().unwrap();
    }
    let _ = inspector().file(name, &out.into_inner());
});
