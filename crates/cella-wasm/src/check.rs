//! What a compiled module must satisfy before it is cached or run: a WASI command
//! (`_start: [] -> []`), importing nothing but [`WASI_P1_MODULE`], within the memory,
//! table and count limits. Checked on every compiled or deserialised module, so a cache
//! entry is always a module that passed.

use wasmtime::{ExternType, Module};

use crate::config::{MAX_MEMORIES_PER_MODULE, MAX_TABLES_PER_MODULE, WasmConfig};
use crate::error::{PayloadError, WASI_P1_MODULE};

/// Size of a WebAssembly page, in bytes.
const WASM_PAGE_BYTES: u64 = 64 * 1024;

/// Checks `module` against the executor's rules and `config`'s limits.
///
/// # Errors
///
/// The first [`PayloadError`] found, imports first (naming the offending import).
pub(crate) fn check_module(module: &Module, config: &WasmConfig) -> Result<(), PayloadError> {
    for import in module.imports() {
        if import.module() != WASI_P1_MODULE {
            return Err(PayloadError::ForeignImport {
                module: import.module().to_owned(),
                name: import.name().to_owned(),
            });
        }
    }
    match module.get_export("_start") {
        None => return Err(PayloadError::NoStart),
        Some(ExternType::Func(ty)) if ty.params().len() == 0 && ty.results().len() == 0 => {}
        Some(_) => return Err(PayloadError::BadStart),
    }
    let needs = module.resources_required();
    if needs.num_memories > MAX_MEMORIES_PER_MODULE {
        return Err(PayloadError::TooManyMemories {
            count: needs.num_memories,
            max: MAX_MEMORIES_PER_MODULE,
        });
    }
    if needs.num_tables > MAX_TABLES_PER_MODULE {
        return Err(PayloadError::TooManyTables {
            count: needs.num_tables,
            max: MAX_TABLES_PER_MODULE,
        });
    }
    if let Some(pages) = needs.max_initial_memory_size {
        let bytes = pages.saturating_mul(WASM_PAGE_BYTES);
        if bytes > config.memory_limit_bytes {
            return Err(PayloadError::InitialMemoryTooLarge {
                bytes,
                limit: config.memory_limit_bytes,
            });
        }
    }
    if let Some(elements) = needs.max_initial_table_size
        && elements > u64::from(config.max_table_elements)
    {
        return Err(PayloadError::InitialTableTooLarge {
            elements,
            limit: config.max_table_elements,
        });
    }
    Ok(())
}
