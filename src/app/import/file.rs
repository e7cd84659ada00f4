//! Customer files, read line by line: NDJSON (each line the body of `POST /v1/customers`) or CSV
//! (a header line naming the columns, then one customer per line, carrying the same fields).
//!
//! Lines are numbered as an editor numbers them (from 1, blank lines and the CSV header counted),
//! and each is read on its own, so a job can resume at any line.

use std::collections::BTreeSet;

use super::{ImportLine, LineCode, LineError};
use crate::{
    app::{Error, customers::CreateCustomer},
    db::customers::CustomerEvidence,
    domain::{FileFormat, Policy, SpecialQualification, UTF8_BOM},
};

/// The columns a CSV file may have, in the order of the documented header line.
pub const CSV_COLUMNS: [&str; 5] = [
    "name",
    "special_qualifications",
    "evidence",
    "reason",
    "external_reference",
];

/// Separates qualifications, and evidence entries, within a CSV cell.
const LIST_SEPARATOR: char = ';';

/// A column of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Column {
    Name,
    SpecialQualifications,
    Evidence,
    Reason,
    ExternalReference,
}

impl Column {
    fn parse(header: &str) -> Option<Self> {
        Some(match header {
            "name" => Self::Name,
            "special_qualifications" => Self::SpecialQualifications,
            "evidence" => Self::Evidence,
            "reason" => Self::Reason,
            "external_reference" => Self::ExternalReference,
            _ => return None,
        })
    }
}

/// What is wrong with a file as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// No line holds a customer.
    #[error("the file has no customer lines")]
    Empty,
    /// The first line of a CSV file is not a header we can read.
    #[error(
        "line 1 of a CSV file must be its header, naming its columns: `name` and any of \
         `special_qualifications`, `evidence`, `reason`, `external_reference`; {0}"
    )]
    Header(String),
}

/// A customer file, its CSV header read.
#[derive(Debug, Clone)]
pub struct CustomerFile<'a> {
    format: FileFormat,
    body: &'a [u8],
    /// The CSV columns in file order (empty for NDJSON).
    columns: Vec<Column>,
    /// Where the customer lines start: after a byte-order mark and the CSV header.
    start: Position,
}

/// A place in a file: a byte offset at the start of a line, and that line's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    offset: usize,
    line: usize,
}

/// One line that is not blank, as read.
#[derive(Debug, Clone, Copy)]
pub struct RawLine<'a> {
    /// Its line number, from 1.
    pub number: usize,
    bytes: &'a [u8],
}

impl<'a> CustomerFile<'a> {
    /// Reads the CSV header, if `format` is CSV.
    pub fn open(format: FileFormat, body: &'a [u8]) -> Result<Self, FileError> {
        let offset = if body.starts_with(UTF8_BOM) {
            UTF8_BOM.len()
        } else {
            0
        };
        let mut file = Self {
            format,
            body,
            columns: Vec::new(),
            start: Position { offset, line: 1 },
        };
        if format == FileFormat::Csv {
            let mut lines = file.lines_from(file.start);
            let header = lines.next().ok_or(FileError::Empty)?;
            file.columns = csv_header(header.bytes)?;
            file.start = lines.position();
        }
        Ok(file)
    }

    /// The file's format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Every customer line, in order.
    pub fn lines(&self) -> RawLines<'a> {
        self.lines_from(self.start)
    }

    /// The customer lines from `position` on (the position of [`RawLines::position`]).
    pub fn lines_from(&self, position: Position) -> RawLines<'a> {
        RawLines {
            body: self.body,
            position,
        }
    }

    /// Reads one line into the customer it describes, with a new id and its evidence checked.
    pub fn read(&self, line: RawLine<'_>, policy: &Policy) -> Result<ImportLine, LineError> {
        let error = |code: LineCode, field: Option<String>, message: String| LineError {
            line: line.number,
            code: code.as_str(),
            field,
            message,
        };
        let fields = match self.format {
            FileFormat::Ndjson => {
                serde_json::from_slice::<CreateCustomer>(line.bytes).map_err(|e| {
                    let code = if e.is_data() {
                        LineCode::InvalidBody
                    } else {
                        LineCode::MalformedJson
                    };
                    error(code, None, e.to_string())
                })?
            }
            FileFormat::Csv => self.csv_fields(line).map_err(|e| match e {
                CsvError::Shape(message) => error(LineCode::InvalidBody, None, message),
                CsvError::Field(field, message) => error(
                    LineCode::InvalidField,
                    Some(field.to_owned()),
                    format!("{field}: {message}"),
                ),
            })?,
        };
        let customer = fields
            .parse()
            .and_then(|draft| {
                policy.qualification_set(draft.change.qualifications.iter())?;
                draft.into_new()
            })
            .map_err(|e| match e {
                Error::InvalidField { field, .. } => error(
                    LineCode::InvalidField,
                    Some(field.to_owned()),
                    e.to_string(),
                ),
                Error::Evidence(e) => error(LineCode::InvalidField, Some(e.field()), e.to_string()),
                Error::InvalidQualificationSet(e) => {
                    error(LineCode::InvalidQualificationSet, None, e.to_string())
                }
                // Parsing and evidence checks fail with nothing else.
                other => error(LineCode::InvalidBody, None, other.to_string()),
            })?;
        Ok(ImportLine {
            line: line.number,
            customer,
        })
    }

    /// The fields of a CSV line, as the same body an NDJSON line would be.
    fn csv_fields(&self, line: RawLine<'_>) -> Result<CreateCustomer, CsvError> {
        let text = std::str::from_utf8(line.bytes)
            .map_err(|_| CsvError::Shape("the line is not UTF-8 text".into()))?;
        let cells = csv_cells(text).map_err(CsvError::Shape)?;
        if cells.len() != self.columns.len() {
            return Err(CsvError::Shape(format!(
                "the line has {} column(s); the header names {}",
                cells.len(),
                self.columns.len()
            )));
        }
        let mut fields = CreateCustomer {
            name: String::new(),
            special_qualifications: BTreeSet::new(),
            evidence: CustomerEvidence::new(),
            reason: None,
            external_reference: None,
        };
        let present = |cell: String| Some(cell).filter(|c| !c.trim().is_empty());
        for (column, cell) in self.columns.iter().zip(cells) {
            match column {
                Column::Name => fields.name = cell,
                Column::SpecialQualifications => {
                    fields.special_qualifications = csv_qualifications(&cell)?;
                }
                Column::Evidence => fields.evidence = csv_evidence(&cell)?,
                Column::Reason => fields.reason = present(cell),
                Column::ExternalReference => fields.external_reference = present(cell),
            }
        }
        Ok(fields)
    }
}

/// Why a CSV line could not be read into fields.
enum CsvError {
    /// The line is not a row of the table (quoting, number of columns).
    Shape(String),
    /// A cell that does not say what its column means.
    Field(&'static str, String),
}

/// The lines of a file that are not blank, from a position on.
#[derive(Debug, Clone)]
pub struct RawLines<'a> {
    body: &'a [u8],
    position: Position,
}

impl RawLines<'_> {
    /// Where the next line starts: resuming there reads the lines not read yet.
    pub fn position(&self) -> Position {
        self.position
    }
}

impl<'a> Iterator for RawLines<'a> {
    type Item = RawLine<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.body.get(self.position.offset..)?;
            if rest.is_empty() {
                return None;
            }
            let (line, consumed) = match rest.iter().position(|b| *b == b'\n') {
                Some(end) => (&rest[..end], end + 1),
                None => (rest, rest.len()),
            };
            let number = self.position.line;
            self.position = Position {
                offset: self.position.offset + consumed,
                line: number + 1,
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(RawLine {
                    number,
                    bytes: line,
                });
            }
        }
    }
}

/// The columns a CSV header names, each known and named once, `name` among them.
fn csv_header(line: &[u8]) -> Result<Vec<Column>, FileError> {
    let text = std::str::from_utf8(line)
        .map_err(|_| FileError::Header("the header is not UTF-8 text".into()))?;
    let cells = csv_cells(text).map_err(FileError::Header)?;
    let mut columns = Vec::with_capacity(cells.len());
    for cell in cells {
        let name = cell.trim();
        let column = Column::parse(name)
            .ok_or_else(|| FileError::Header(format!("`{name}` is not a column")))?;
        if columns.contains(&column) {
            return Err(FileError::Header(format!("`{name}` is named twice")));
        }
        columns.push(column);
    }
    if !columns.contains(&Column::Name) {
        return Err(FileError::Header("there is no `name` column".into()));
    }
    Ok(columns)
}

/// The cells of one CSV line (RFC 4180 quoting: a cell in double quotes may hold commas, and `""`
/// for a quote). A cell cannot span lines: no field of a customer may hold a line break.
fn csv_cells(line: &str) -> Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    // Inside quotes; and whether the current cell was quoted (and its quotes closed).
    let mut quoted = false;
    let mut closed = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cell.push('"');
                } else {
                    quoted = false;
                    closed = true;
                }
            } else {
                cell.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                cells.push(std::mem::take(&mut cell));
                closed = false;
            }
            '"' if cell.is_empty() && !closed => quoted = true,
            _ if closed => {
                return Err(format!(
                    "column {} has text after its closing quote",
                    cells.len() + 1
                ));
            }
            '"' => {
                return Err(format!(
                    "column {} has a quote inside text that is not in quotes (write the cell \
                     in quotes, with \"\" for each quote)",
                    cells.len() + 1
                ));
            }
            _ => cell.push(c),
        }
    }
    if quoted {
        return Err(format!(
            "column {} opens a quote that the line does not close (a cell cannot hold a line \
             break)",
            cells.len() + 1
        ));
    }
    cells.push(cell);
    Ok(cells)
}

/// `education;state_owned_entity`: qualifications separated by `;` (none when blank).
fn csv_qualifications(cell: &str) -> Result<BTreeSet<SpecialQualification>, CsvError> {
    cell.split(LIST_SEPARATOR)
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| {
            q.parse()
                .map_err(|e| CsvError::Field("special_qualifications", format!("{e}")))
        })
        .collect()
}

/// `education=QEU-1;gcc=GCV-2`: `qualification=reference` entries separated by `;`.
fn csv_evidence(cell: &str) -> Result<CustomerEvidence, CsvError> {
    let mut evidence = CustomerEvidence::new();
    for entry in cell
        .split(LIST_SEPARATOR)
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (qualification, reference) = entry.split_once('=').ok_or_else(|| {
            CsvError::Field(
                "evidence",
                format!("`{entry}` is not qualification=reference"),
            )
        })?;
        let qualification: SpecialQualification = qualification
            .trim()
            .parse()
            .map_err(|e| CsvError::Field("evidence", format!("{e}")))?;
        if evidence
            .insert(qualification, reference.to_owned())
            .is_some()
        {
            return Err(CsvError::Field(
                "evidence",
                format!("{qualification} has evidence twice"),
            ));
        }
    }
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(format: FileFormat, body: &str) -> Vec<Result<ImportLine, LineError>> {
        let file = CustomerFile::open(format, body.as_bytes()).unwrap();
        file.lines()
            .map(|l| file.read(l, &Policy::rule_book()))
            .collect()
    }

    #[test]
    fn cells_follow_rfc_4180_within_a_line() {
        assert_eq!(csv_cells("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            csv_cells(r#""Fabrikam, Inc.","say ""hi""",x"#).unwrap(),
            ["Fabrikam, Inc.", r#"say "hi""#, "x"]
        );
        assert_eq!(csv_cells(r#""""#).unwrap(), [""]);
        assert_eq!(csv_cells("").unwrap(), [""]);
        for bad in [r#""open"#, r#""a"b"#, r#"a"b"#] {
            assert!(csv_cells(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_csv_line_carries_what_an_ndjson_line_does() {
        let csv = lines(
            FileFormat::Csv,
            "\u{feff}name,special_qualifications,evidence,reason,external_reference\r\n\
             \"Fabrikam, Inc.\",education;state_owned_entity,education=QEU-1; state_owned_entity=SOE-2,,CRM-1\r\n\
             \r\n\
             Contoso,,,moved from CRM,\n",
        );
        let ndjson = lines(
            FileFormat::Ndjson,
            "{\"name\":\"Fabrikam, Inc.\",\"special_qualifications\":[\"education\",\"state_owned_entity\"],\
             \"evidence\":{\"education\":\"QEU-1\",\"state_owned_entity\":\"SOE-2\"},\"external_reference\":\"CRM-1\"}\n\
             \n\n{\"name\":\"Contoso\",\"reason\":\"moved from CRM\"}",
        );
        let shown = |lines: Vec<Result<ImportLine, LineError>>| -> Vec<String> {
            lines
                .into_iter()
                .map(|l| {
                    let c = l.unwrap().customer;
                    format!(
                        "{} {:?} {:?} {} {:?}",
                        c.name.as_str(),
                        c.qualifications,
                        c.evidence,
                        c.reason.as_str(),
                        c.external_reference.as_ref().map(|r| r.as_str())
                    )
                })
                .collect()
        };
        let csv_lines: Vec<usize> = csv.iter().map(|l| l.as_ref().unwrap().line).collect();
        assert_eq!(csv_lines, [2, 4]);
        assert_eq!(shown(csv), shown(ndjson));
    }

    #[test]
    fn columns_may_come_in_any_order_but_name_is_required() {
        let read = lines(FileFormat::Csv, "external_reference,name\nR-1,Northwind\n");
        let customer = &read[0].as_ref().unwrap().customer;
        assert_eq!(customer.name.as_str(), "Northwind");
        assert_eq!(
            customer.external_reference.as_ref().unwrap().as_str(),
            "R-1"
        );
        for header in [
            "reason,evidence",
            "name,nickname",
            "name,name",
            "{\"name\":\"x\"}",
        ] {
            let err = CustomerFile::open(FileFormat::Csv, header.as_bytes()).unwrap_err();
            assert!(matches!(err, FileError::Header(_)), "{header}: {err}");
        }
        assert_eq!(
            CustomerFile::open(FileFormat::Csv, b"\n \n").unwrap_err(),
            FileError::Empty
        );
    }

    #[test]
    fn bad_lines_say_which_line_and_field() {
        let read = lines(
            FileFormat::Csv,
            "name,special_qualifications,evidence\n\
             A,gcc,\n\
             B,teaching,\n\
             C,gcc,gcc\n\
             D,gcc;education,gcc=1;education=2\n\
             E,x\n\
             \"F,,\n",
        );
        let errors: Vec<(usize, &str, Option<String>)> = read
            .iter()
            .map(|l| {
                let e = l.as_ref().unwrap_err();
                (e.line, e.code, e.field.clone())
            })
            .collect();
        assert_eq!(
            errors,
            [
                (2, "invalid_field", Some("evidence.gcc".into())),
                (3, "invalid_field", Some("special_qualifications".into())),
                (4, "invalid_field", Some("evidence".into())),
                (5, "invalid_qualification_set", None),
                (6, "invalid_body", None),
                (7, "invalid_body", None),
            ]
        );
        let ndjson = lines(
            FileFormat::Ndjson,
            "{\"name\":\"A\",\"external_reference\":\" \"}\n{",
        );
        let codes: Vec<_> = ndjson
            .iter()
            .map(|l| l.as_ref().unwrap_err().code)
            .collect();
        assert_eq!(codes, ["invalid_field", "malformed_json"]);
    }

    #[test]
    fn reading_resumes_at_a_position() {
        let file = CustomerFile::open(FileFormat::Csv, b"name\nA\n\nB\nC").unwrap();
        let mut all = file.lines();
        assert_eq!(all.next().unwrap().number, 2);
        let rest: Vec<usize> = file.lines_from(all.position()).map(|l| l.number).collect();
        assert_eq!(rest, [4, 5]);
    }
}
