//! ELF dependency resolution without running anything: the program's interpreter
//! (`PT_INTERP`) and the closure of its `DT_NEEDED` libraries, searched the way `ld.so`
//! searches them (`DT_RPATH`, `DT_RUNPATH`, the directories of `/etc/ld.so.conf`, the
//! standard multiarch directories). `ldd` is never run: it may execute the binary.
//!
//! Files are read through [`object::ReadCache`], which reads only the parts of a file the
//! parser asks for (headers, the dynamic segment, a few strings), not the whole file.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, FileKind, ReadCache, ReadRef};

use crate::ImageError;

/// What the loader needs to know about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElfInfo {
    /// 64-bit (`ELFCLASS64`) or not.
    pub(crate) is_64: bool,
    /// `e_machine`.
    pub(crate) machine: u16,
    /// `PT_INTERP`, if any.
    pub(crate) interpreter: Option<String>,
    /// `DT_NEEDED`, in order.
    pub(crate) needed: Vec<String>,
    /// `DT_RPATH`, split at `:`.
    pub(crate) rpath: Vec<String>,
    /// `DT_RUNPATH`, split at `:`.
    pub(crate) runpath: Vec<String>,
    /// Whether it has a `PT_DYNAMIC` segment at all.
    pub(crate) dynamic: bool,
}

impl ElfInfo {
    /// A static program: no interpreter and no library to load.
    #[cfg(test)]
    pub(crate) fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }
}

/// Whether `path` starts with the ELF magic (`\x7fELF`).
///
/// # Errors
///
/// [`ImageError::Io`] if it cannot be read.
pub(crate) fn is_elf(path: &Path) -> Result<bool, ImageError> {
    let mut file = File::open(path).map_err(|e| ImageError::io("opening", path, e))?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError::io("reading", path, e)),
        }
    }
    Ok(&magic == b"\x7fELF")
}

/// Reads the loader-relevant parts of the ELF file at `path`.
///
/// # Errors
///
/// [`ImageError::NotElf`] if it is not an ELF file, [`ImageError::Elf`] if it is a
/// malformed one, [`ImageError::Io`] if it cannot be read.
pub(crate) fn read_elf(path: &Path) -> Result<ElfInfo, ImageError> {
    if !is_elf(path)? {
        return Err(ImageError::NotElf {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|e| ImageError::io("opening", path, e))?;
    let cache = ReadCache::new(file);
    let bad = |message: String| ImageError::Elf {
        path: path.to_path_buf(),
        message,
    };
    match FileKind::parse(&cache) {
        Ok(FileKind::Elf64) => parse::<object::elf::FileHeader64<Endianness>, _>(&cache),
        Ok(FileKind::Elf32) => parse::<object::elf::FileHeader32<Endianness>, _>(&cache),
        Ok(other) => Err(format!("unsupported file kind {other:?}")),
        Err(e) => Err(e.to_string()),
    }
    .map_err(bad)
}

fn parse<'d, E, R>(data: R) -> Result<ElfInfo, String>
where
    E: FileHeader<Endian = Endianness>,
    R: ReadRef<'d>,
{
    let header = E::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| e.to_string())?;
    let mut interpreter = None;
    let mut dynamic = None;
    for seg in segments {
        if let Some(interp) = seg.interpreter(endian, data).map_err(|e| e.to_string())? {
            interpreter = Some(
                std::str::from_utf8(interp)
                    .map_err(|_| "PT_INTERP is not UTF-8".to_owned())?
                    .to_owned(),
            );
        }
        if let Some(d) = seg.dynamic(endian, data).map_err(|e| e.to_string())? {
            dynamic = Some(d);
        }
    }
    let mut info = ElfInfo {
        is_64: header.is_class_64(),
        machine: header.e_machine(endian),
        interpreter,
        needed: Vec::new(),
        rpath: Vec::new(),
        runpath: Vec::new(),
        dynamic: dynamic.is_some(),
    };
    let Some(dynamic) = dynamic else {
        return Ok(info);
    };
    // The string table is named by its address: map it to a file offset through the
    // PT_LOAD segment that holds it, as the loader sees it.
    let mut strtab = None;
    let mut strsz = None;
    for d in dynamic {
        let tag = d.tag(endian);
        if tag == object::elf::DT_NULL {
            break;
        }
        if tag == object::elf::DT_STRTAB {
            strtab = Some(d.val(endian));
        } else if tag == object::elf::DT_STRSZ {
            strsz = Some(d.val(endian));
        }
    }
    let (Some(strtab), Some(strsz)) = (strtab, strsz) else {
        return Ok(info);
    };
    let offset = segments
        .iter()
        .filter(|s| s.p_type(endian) == object::elf::PT_LOAD)
        .find_map(|s| {
            let vaddr: u64 = s.p_vaddr(endian).into();
            let filesz: u64 = s.p_filesz(endian).into();
            let off: u64 = s.p_offset(endian).into();
            (strtab >= vaddr && strtab < vaddr.saturating_add(filesz))
                .then(|| off.saturating_add(strtab - vaddr))
        })
        .ok_or_else(|| format!("DT_STRTAB {strtab:#x} is not in a loaded segment"))?;
    let string = |at: u64| -> Result<String, String> {
        if at >= strsz {
            return Err(format!("dynamic string at {at} is past DT_STRSZ {strsz}"));
        }
        let start = offset.saturating_add(at);
        let bytes = data
            .read_bytes_at_until(start..offset.saturating_add(strsz), 0)
            .map_err(|()| format!("cannot read the dynamic string at {at}"))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a dynamic string is not UTF-8".to_owned())
    };
    let split = |s: String| -> Vec<String> {
        s.split(':')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for d in dynamic {
        let tag = d.tag(endian);
        if tag == object::elf::DT_NULL {
            break;
        }
        let val = d.val(endian);
        if tag == object::elf::DT_NEEDED {
            info.needed.push(string(val)?);
        } else if tag == object::elf::DT_RPATH {
            info.rpath.extend(split(string(val)?));
        } else if tag == object::elf::DT_RUNPATH {
            info.runpath.extend(split(string(val)?));
        }
    }
    Ok(info)
}

/// One library (or interpreter) of a program, as the loader finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The path the loader opens on this host (links not resolved).
    pub(crate) host: PathBuf,
    /// The paths the instance's loader will open it at: `host`, and for a library found
    /// only through `/etc/ld.so.conf` (whose cache the instance does not have) also the
    /// first standard directory, where the instance's loader looks.
    pub(crate) inside: Vec<PathBuf>,
}

/// The loader's search configuration for one architecture.
#[derive(Debug, Clone)]
pub(crate) struct SearchPath {
    /// Directories of `/etc/ld.so.conf` (and its includes), in order.
    conf: Vec<PathBuf>,
    /// The standard directories, in the loader's order.
    standard: Vec<PathBuf>,
}

/// The multiarch triplet Debian-style systems use for `machine`.
fn multiarch(machine: u16, is_64: bool) -> Option<&'static str> {
    match (machine, is_64) {
        (object::elf::EM_X86_64, true) => Some("x86_64-linux-gnu"),
        (object::elf::EM_AARCH64, true) => Some("aarch64-linux-gnu"),
        (object::elf::EM_386, false) => Some("i386-linux-gnu"),
        (object::elf::EM_RISCV, true) => Some("riscv64-linux-gnu"),
        (object::elf::EM_PPC64, true) => Some("powerpc64le-linux-gnu"),
        (object::elf::EM_S390, true) => Some("s390x-linux-gnu"),
        (object::elf::EM_ARM, false) => Some("arm-linux-gnueabihf"),
        _ => None,
    }
}

impl SearchPath {
    /// The host's configuration for programs like `info`.
    pub(crate) fn host(info: &ElfInfo) -> Self {
        Self::with_conf(Path::new("/etc/ld.so.conf"), info)
    }

    fn with_conf(conf_file: &Path, info: &ElfInfo) -> Self {
        let mut conf = Vec::new();
        let mut seen = BTreeSet::new();
        read_ld_so_conf(conf_file, &mut conf, &mut seen, 0);
        let mut standard = Vec::new();
        if let Some(triplet) = multiarch(info.machine, info.is_64) {
            standard.push(PathBuf::from("/lib").join(triplet));
            standard.push(PathBuf::from("/usr/lib").join(triplet));
        }
        if info.is_64 {
            standard.push("/lib64".into());
            standard.push("/usr/lib64".into());
        }
        standard.push("/lib".into());
        standard.push("/usr/lib".into());
        Self { conf, standard }
    }
}

/// Appends the directories named by the `ld.so.conf`-format file `path`, following its
/// `include` lines (glob `*` in the last component), at most 8 levels deep. A missing
/// file adds nothing, as for `ldconfig`.
fn read_ld_so_conf(path: &Path, out: &mut Vec<PathBuf>, seen: &mut BTreeSet<PathBuf>, depth: u8) {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if depth > 8 || !seen.insert(key) {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let base = path.parent().unwrap_or(Path::new("/"));
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(pattern) = line
            .strip_prefix("include")
            .filter(|r| r.starts_with(char::is_whitespace))
        {
            for pattern in pattern.split_whitespace() {
                let pattern = base.join(pattern);
                for file in glob(&pattern) {
                    read_ld_so_conf(&file, out, seen, depth + 1);
                }
            }
        } else if line.starts_with("hwcap") {
            // Obsolete `hwcap` lines name no directory.
        } else {
            // `dir=type` is an old syntax; the directory is before `=`.
            let dir = PathBuf::from(line.split('=').next().unwrap_or(line).trim());
            if dir.is_absolute() && !out.contains(&dir) {
                out.push(dir);
            }
        }
    }
}

/// The files matching `pattern`, whose last component may hold `*` wildcards, sorted.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    if !name.contains('*') {
        return vec![pattern.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| wildcard_match(&name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// `*`-only wildcard matching.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == name;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Expands `$ORIGIN`, `${ORIGIN}`, `$LIB` and `${LIB}` in a search path entry; `None`
/// for an entry the loader could not use here (`$PLATFORM`, a relative directory).
fn expand(entry: &str, origin: &Path, info: &ElfInfo) -> Option<PathBuf> {
    let lib = match multiarch(info.machine, info.is_64) {
        Some(t) => format!("lib/{t}"),
        None if info.is_64 => "lib64".to_owned(),
        None => "lib".to_owned(),
    };
    let origin = origin.to_string_lossy();
    let expanded = entry
        .replace("${ORIGIN}", &origin)
        .replace("$ORIGIN", &origin)
        .replace("${LIB}", &lib)
        .replace("$LIB", &lib);
    if expanded.contains('$') {
        return None;
    }
    let path = PathBuf::from(expanded);
    path.is_absolute().then(|| normalize(&path))
}

/// Removes `.` and resolves `..` lexically (as the loader does with the strings it
/// builds, before the kernel sees them).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// An object waiting for its libraries to be resolved.
struct Pending {
    /// Where it was found (for `$ORIGIN` and messages).
    path: PathBuf,
    info: ElfInfo,
}

/// Resolves the interpreter and the `DT_NEEDED` closure of every object in `roots`
/// (a program, or extension modules loaded into one), against the search path of
/// `search`. The first root's `DT_RPATH` applies to every object, as the executable's
/// does for the loader.
///
/// # Errors
///
/// [`ImageError::LibraryNotFound`] naming the library and who needs it, and the errors
/// of [`read_elf`].
pub(crate) fn resolve_closure(
    roots: &[(PathBuf, ElfInfo)],
    search: &SearchPath,
) -> Result<Vec<Resolved>, ImageError> {
    let mut out: Vec<Resolved> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let exe_rpath: Vec<PathBuf> = roots.first().map_or_else(Vec::new, |(path, info)| {
        if info.runpath.is_empty() {
            let origin = origin_of(path);
            info.rpath
                .iter()
                .filter_map(|e| expand(e, &origin, info))
                .collect()
        } else {
            Vec::new()
        }
    });
    for (path, info) in roots {
        queue.push_back(Pending {
            path: path.clone(),
            info: info.clone(),
        });
    }
    while let Some(obj) = queue.pop_front() {
        if let Some(interp) = &obj.info.interpreter {
            let path = PathBuf::from(interp);
            if !by_name.contains_key(interp) {
                let info = read_elf(&path).map_err(|e| match e {
                    ImageError::Io { source, .. }
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        ImageError::LibraryNotFound {
                            library: interp.clone(),
                            needed_by: obj.path.clone(),
                            searched: vec![path.clone()],
                        }
                    }
                    other => other,
                })?;
                by_name.insert(interp.clone(), out.len());
                if let Some(name) = path.file_name() {
                    by_name.insert(name.to_string_lossy().into_owned(), out.len());
                }
                out.push(Resolved {
                    host: path.clone(),
                    inside: vec![path.clone()],
                });
                queue.push_back(Pending { path, info });
            }
        }
        let origin = origin_of(&obj.path);
        for needed in &obj.info.needed {
            if by_name.contains_key(needed) {
                continue;
            }
            let (found, info) = find_library(needed, &obj, &origin, &exe_rpath, search)?;
            by_name.insert(needed.clone(), out.len());
            out.push(found.clone());
            queue.push_back(Pending {
                path: found.host,
                info,
            });
        }
    }
    Ok(out)
}

fn origin_of(path: &Path) -> PathBuf {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    real.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// Finds `needed` for `obj` in the loader's order: a name with a `/` as is; else
/// `DT_RPATH` of the object and of the executable (only if the object has no
/// `DT_RUNPATH`), `DT_RUNPATH`, the `ld.so.conf` directories, the standard directories.
/// A candidate of another class or machine is skipped, as the loader skips it.
fn find_library(
    needed: &str,
    obj: &Pending,
    origin: &Path,
    exe_rpath: &[PathBuf],
    search: &SearchPath,
) -> Result<(Resolved, ElfInfo), ImageError> {
    let compatible = |path: &Path| -> Option<ElfInfo> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() {
            return None;
        }
        let info = read_elf(path).ok()?;
        (info.is_64 == obj.info.is_64 && info.machine == obj.info.machine).then_some(info)
    };
    if needed.contains('/') {
        let path = normalize(&origin.join(needed));
        return match compatible(&path) {
            Some(info) => Ok((
                Resolved {
                    host: path.clone(),
                    inside: vec![path],
                },
                info,
            )),
            None => Err(ImageError::LibraryNotFound {
                library: needed.to_owned(),
                needed_by: obj.path.clone(),
                searched: vec![path],
            }),
        };
    }
    let expand_all = |entries: &[String]| -> Vec<PathBuf> {
        entries
            .iter()
            .filter_map(|e| expand(e, origin, &obj.info))
            .collect()
    };
    // (directory, whether the instance's loader searches it too)
    let mut dirs: Vec<(PathBuf, bool)> = Vec::new();
    if obj.info.runpath.is_empty() {
        dirs.extend(expand_all(&obj.info.rpath).into_iter().map(|d| (d, true)));
        dirs.extend(exe_rpath.iter().cloned().map(|d| (d, true)));
    } else {
        dirs.extend(expand_all(&obj.info.runpath).into_iter().map(|d| (d, true)));
    }
    for d in &search.conf {
        let standard = search.standard.contains(d);
        dirs.push((d.clone(), standard));
    }
    dirs.extend(search.standard.iter().cloned().map(|d| (d, true)));
    let mut searched = Vec::new();
    for (dir, seen_inside) in dirs {
        if searched.contains(&dir) {
            continue;
        }
        let path = dir.join(needed);
        searched.push(dir);
        if let Some(info) = compatible(&path) {
            let mut inside = vec![path.clone()];
            if !seen_inside && let Some(first) = search.standard.first() {
                inside.push(first.join(needed));
            }
            return Ok((Resolved { host: path, inside }, info));
        }
    }
    Err(ImageError::LibraryNotFound {
        library: needed.to_owned(),
        needed_by: obj.path.clone(),
        searched,
    })
}

/// The ELF interpreter and the `DT_NEEDED` closure of `binary`, as host paths the loader
/// would open (links not resolved), interpreter first. A static binary has none.
///
/// Resolution follows `ld.so`: `DT_RPATH`/`DT_RUNPATH` with `$ORIGIN` and `$LIB`, the
/// directories of `/etc/ld.so.conf` (and its includes), then the standard multiarch and
/// system directories; libraries of another class or machine are skipped. Nothing is
/// executed. `LD_LIBRARY_PATH`, `LD_PRELOAD` and `glibc-hwcaps` subdirectories are not
/// considered: the instance does not have them either.
///
/// # Errors
///
/// [`ImageError::NotElf`] if `binary` is not an ELF file, [`ImageError::Elf`] if it is
/// malformed, [`ImageError::LibraryNotFound`] naming a library that cannot be found,
/// [`ImageError::Io`].
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let info = read_elf(binary)?;
    let search = SearchPath::host(&info);
    Ok(resolve_closure(&[(binary.to_path_buf(), info)], &search)?
        .into_iter()
        .map(|r| r.host)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.conf", "libc.conf"));
        assert!(!wildcard_match("*.conf", "libc.conf.bak"));
        assert!(wildcard_match("a*b*c", "aXbYc"));
        assert!(!wildcard_match("a*b*c", "aXc"));
        assert!(wildcard_match("exact", "exact"));
        assert!(wildcard_match("*", "anything"));
    }

    #[test]
    fn origin_and_lib_are_expanded() {
        let info = ElfInfo {
            is_64: true,
            machine: object::elf::EM_X86_64,
            interpreter: None,
            needed: vec![],
            rpath: vec![],
            runpath: vec![],
            dynamic: true,
        };
        let o = Path::new("/opt/app/bin");
        assert_eq!(
            expand("$ORIGIN/../lib", o, &info),
            Some(PathBuf::from("/opt/app/lib"))
        );
        assert_eq!(
            expand("${ORIGIN}/x", o, &info),
            Some(PathBuf::from("/opt/app/bin/x"))
        );
        assert_eq!(
            expand("/usr/$LIB", o, &info),
            Some(PathBuf::from("/usr/lib/x86_64-linux-gnu"))
        );
        assert_eq!(expand("$PLATFORM/x", o, &info), None);
        assert_eq!(expand("relative", o, &info), None);
    }

    #[test]
    fn ld_so_conf_includes_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).unwrap();
        std::fs::write(
            d.join("ld.so.conf"),
            "# comment\n/opt/first\ninclude conf.d/*.conf\n/opt/last # trailing\n",
        )
        .unwrap();
        std::fs::write(d.join("conf.d/b.conf"), "/opt/b\n").unwrap();
        std::fs::write(d.join("conf.d/a.conf"), "/opt/a\ninclude ../ld.so.conf\n").unwrap();
        std::fs::write(d.join("conf.d/ignored.txt"), "/opt/no\n").unwrap();
        let info = read_elf(Path::new("/bin/true")).unwrap();
        let s = SearchPath::with_conf(&d.join("ld.so.conf"), &info);
        let conf: Vec<&str> = s.conf.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(conf, ["/opt/first", "/opt/a", "/opt/b", "/opt/last"]);
        assert_eq!(s.standard.last().unwrap(), Path::new("/usr/lib"));
    }

    #[test]
    fn true_needs_libc_and_its_interpreter() {
        let info = read_elf(Path::new("/bin/true")).unwrap();
        assert!(!info.is_static());
        assert!(
            info.needed.iter().any(|n| n.starts_with("libc.so")),
            "{info:?}"
        );
        let libs = shared_libraries(Path::new("/bin/true")).unwrap();
        let interp = PathBuf::from(info.interpreter.unwrap());
        assert_eq!(libs[0], interp, "interpreter first: {libs:?}");
        assert!(
            libs.iter().any(|p| p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libc.so")),
            "{libs:?}"
        );
        for lib in &libs {
            assert!(lib.is_absolute() && lib.exists(), "{lib:?}");
        }
    }

    #[test]
    fn non_elf_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("shim");
        std::fs::write(&script, "#!/bin/sh\nexec python3 \"$@\"\n").unwrap();
        assert!(matches!(
            shared_libraries(&script),
            Err(ImageError::NotElf { .. })
        ));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            shared_libraries(&empty),
            Err(ImageError::NotElf { .. })
        ));
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, b"\x7fELF\x02\x01\x01garbage").unwrap();
        assert!(matches!(
            shared_libraries(&garbage),
            Err(ImageError::Elf { .. })
        ));
        assert!(matches!(
            shared_libraries(&dir.path().join("nope")),
            Err(ImageError::Io { .. })
        ));
    }

    #[test]
    fn a_missing_library_is_named_with_who_needs_it() {
        let info = ElfInfo {
            is_64: true,
            machine: object::elf::EM_X86_64,
            interpreter: None,
            needed: vec!["libcella-does-not-exist.so.9".into()],
            rpath: vec![],
            runpath: vec!["/nonexistent/$ORIGIN".into()],
            dynamic: true,
        };
        let search = SearchPath::host(&info);
        let err = resolve_closure(&[(PathBuf::from("/opt/x/prog"), info)], &search).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("libcella-does-not-exist.so.9"), "{text}");
        assert!(text.contains("/opt/x/prog"), "{text}");
    }
}
