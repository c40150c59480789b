//! [`Record`] for the domain types of `cella-types`. Table names are part of the on-disk
//! format (`docs/store.md`): renaming one orphans its records.

use cella_types::{Function, InputFile, OutputFile, Task, User};

use crate::meta::Record;

impl Record for User {
    const TABLE: &'static str = "users";

    fn key(&self) -> String {
        self.name.to_string()
    }
}

impl Record for Function {
    const TABLE: &'static str = "functions";

    fn key(&self) -> String {
        self.id.to_string()
    }
}

impl Record for InputFile {
    const TABLE: &'static str = "input_files";

    fn key(&self) -> String {
        self.id.to_string()
    }
}

impl Record for OutputFile {
    const TABLE: &'static str = "output_files";

    fn key(&self) -> String {
        self.id.to_string()
    }
}

impl Record for Task {
    const TABLE: &'static str = "tasks";

    fn key(&self) -> String {
        self.id().to_string()
    }
}
