//! Customer imports: the formats a customer file comes in, and the states of an import job.

use super::wire_enum;

/// What some programs (spreadsheets) write at the start of a UTF-8 file; not part of its text.
pub const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

wire_enum!(
    /// How a customer file is written.
    FileFormat("file format") {
        /// One JSON object per line, each the body of `POST /v1/customers`.
        Ndjson => "ndjson",
        /// A header line naming the columns, then one customer per line.
        Csv => "csv",
    }
);

impl FileFormat {
    /// The format of `file`, from its first line that is not blank: NDJSON when it is a JSON
    /// object, else CSV (whose first line is then the header, checked as such).
    pub fn of(file: &[u8]) -> Self {
        let file = file.strip_prefix(UTF8_BOM).unwrap_or(file);
        let first = file
            .split(|b| *b == b'\n')
            .map(|line| line.trim_ascii())
            .find(|line| !line.is_empty());
        match first {
            Some(line) if line.starts_with(b"{") => Self::Ndjson,
            _ => Self::Csv,
        }
    }
}

wire_enum!(
    /// Where an import job is.
    ImportJobStatus("import job status") {
        /// The file was checked and had no errors; nothing is imported until someone starts it.
        Validated => "validated",
        /// Started; waiting for an instance to take it.
        Queued => "queued",
        /// An instance is writing it, batch by batch (or will resume it).
        Running => "running",
        /// Every line is written.
        Done => "done",
        /// Stopped for good; the batches written before stay written.
        Failed => "failed",
    }
);

impl ImportJobStatus {
    /// Whether the job will still change by itself (its page should keep refreshing).
    pub fn in_progress(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }
}

/// Whole percent of `done` out of `total`, rounded down so that 100 means every line.
pub fn percent_done(done: u64, total: u64) -> u64 {
    (done * 100).checked_div(total).unwrap_or(100).min(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_ndjson_when_its_first_line_is_an_object() {
        assert_eq!(
            FileFormat::of(b"\n  {\"name\":\"a\"}\n"),
            FileFormat::Ndjson
        );
        assert_eq!(FileFormat::of(b"name,reason\nA,b\n"), FileFormat::Csv);
        assert_eq!(FileFormat::of(b"\xef\xbb\xbfname\n"), FileFormat::Csv);
        assert_eq!(FileFormat::of(b"\xef\xbb\xbf{}\n"), FileFormat::Ndjson);
        assert_eq!(FileFormat::of(b""), FileFormat::Csv);
    }

    #[test]
    fn percent_reaches_100_only_when_every_line_is_done() {
        assert_eq!(percent_done(0, 10), 0);
        assert_eq!(percent_done(999, 1000), 99);
        assert_eq!(percent_done(1000, 1000), 100);
        assert_eq!(percent_done(0, 0), 100);
    }
}
