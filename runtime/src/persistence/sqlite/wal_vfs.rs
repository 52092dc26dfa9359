//! A VFS shim that writes each commit's WAL frames with one `pwrite` instead of two per page.
//!
//! SQLite appends a frame to the WAL as two writes, its 24-byte header and then the page, at
//! offsets that are not page aligned; a checkpoint commit of about nine pages is some twenty
//! system calls that each look up, lock and dirty one or two page-cache pages. This shim sits
//! over the platform's default VFS (everything else is forwarded unchanged, so locking, the
//! file format and the shared-memory index are exactly what other processes and the Python
//! reference use) and, for WAL files only, collects appended bytes in a buffer that it writes
//! with one call:
//!
//! - when the commit frame is complete (a frame header with a non-zero "database size" field,
//!   followed by its page): a commit's frames are in the file, as without the shim, before
//!   SQLite publishes the commit in the shared-memory header, so other connections and
//!   processes never see a commit whose frames are not in the file, and a crash of the process
//!   after the commit loses nothing;
//! - before anything that looks at the file (a read, a sync, its size, a truncation, a file
//!   control, closing it), before a write that does not continue the buffered bytes, and when
//!   the buffer passes [`FLUSH_AT`];
//! - when the connection releases the WAL write lock, so frames of a transaction that rolled
//!   back are in the file (beyond the last commit, as without the shim) before another writer
//!   may append there;
//! - as a last safety net, in the database file's `xShmBarrier`, which SQLite calls while
//!   publishing a commit. That call cannot report an error, so if writing there fails the
//!   process aborts rather than publish frames that are not in the file (it never happens in
//!   practice: the commit frame has already flushed the buffer by then).
//!
//! Writes to bytes the handle has already written (SQLite rewriting frame checksums, or the
//! frames of a rolled-back transaction being overwritten) are not buffered. A failed buffered
//! write is reported by the call that flushed it, which fails that statement, as a failed
//! write would without the shim.

use rusqlite::ffi;
use std::ffi::{CStr, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

/// The name the shim is registered under.
const NAME: &CStr = c"flatmachines-walbuf";
/// Buffered bytes past which the buffer is written even without a commit (large transactions).
const FLUSH_AT: usize = 256 * 1024;
/// The most the default VFS writes in one call: the Unix VFS silently writes only the low 17
/// bits of a larger size (and reports the short write as a full disk).
const WRITE_MAX: usize = 64 * 1024;
/// The size of a WAL frame header.
const FRAME_HEADER: i32 = 24;
/// The shared-memory lock slot of the WAL writer (`WAL_WRITE_LOCK` in SQLite's `wal.c`).
const WAL_WRITE_LOCK: c_int = 0;

/// The shim's VFS name, registering it on first use; `None` if SQLite has no default VFS to
/// wrap or refuses the registration (connections then use the default VFS).
pub(crate) fn name() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    // SAFETY: `register` only calls SQLite's VFS registry functions with valid arguments.
    REGISTERED
        .get_or_init(|| unsafe { register() })
        .then_some(NAME)
}

/// Our VFS object: SQLite hands back a pointer to `vfs`, the first field.
#[repr(C)]
struct Shim {
    vfs: ffi::sqlite3_vfs,
    real: *mut ffi::sqlite3_vfs,
}

unsafe fn register() -> bool {
    // SAFETY: initialising SQLite is always allowed; `sqlite3_vfs_find(NULL)` returns the
    // default VFS, which lives as long as the process.
    unsafe {
        if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
            return false;
        }
        let real = ffi::sqlite3_vfs_find(ptr::null());
        if real.is_null() || (*real).szOsFile < 0 {
            return false;
        }
        // A copy of the default VFS (so its other methods, which may read `pAppData` and
        // `mxPathname` from the VFS they are given, find the same values), with a larger file
        // object and our `xOpen`.
        let mut vfs = ptr::read(real);
        vfs.pNext = ptr::null_mut();
        vfs.zName = NAME.as_ptr();
        vfs.szOsFile = (HEADER + (*real).szOsFile as usize) as c_int;
        vfs.xOpen = Some(x_open);
        let shim = Box::leak(Box::new(Shim { vfs, real }));
        ffi::sqlite3_vfs_register(&mut shim.vfs, 0) == ffi::SQLITE_OK
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Main,
    Wal,
    Other,
}

/// Our part of a file object; the default VFS's file object follows at offset [`HEADER`].
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    kind: Kind,
    /// For a WAL file: its database file (null if unknown). Both belong to one connection.
    db: *mut File,
    /// For a database file: its open WAL file, if any.
    wal: *mut File,
    /// Appended WAL bytes not yet written, starting at file offset `buf_off`.
    buf: Vec<u8>,
    buf_off: i64,
    /// The end of the furthest byte written (or buffered) since the WAL header was last
    /// written at offset 0; writes below it are rewrites and go straight to the file.
    frontier: i64,
    /// Where the page of a commit frame starts, just after its header was buffered.
    commit_page_at: i64,
}

const HEADER: usize = std::mem::size_of::<File>().next_multiple_of(16);

/// The default VFS's file object inside ours.
unsafe fn real(p: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: the caller passes a file object allocated with our `szOsFile`.
    unsafe { p.cast::<u8>().add(HEADER).cast() }
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    p: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes our VFS and a file object of `szOsFile` bytes, which it only uses
    // through the methods we install.
    unsafe {
        let real_vfs = (*vfs.cast::<Shim>()).real;
        let rp = real(p);
        (*p).pMethods = ptr::null();
        (*rp).pMethods = ptr::null();
        let Some(open) = (*real_vfs).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let rc = open(real_vfs, name, rp, flags, out_flags);
        let real_methods = (*rp).pMethods;
        if real_methods.is_null() {
            return rc;
        }
        let kind = if flags & ffi::SQLITE_OPEN_WAL != 0 {
            Kind::Wal
        } else if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
            Kind::Main
        } else {
            Kind::Other
        };
        ptr::write(
            p.cast::<File>(),
            File {
                base: ffi::sqlite3_file {
                    pMethods: if (*real_methods).iVersion >= 3 {
                        &METHODS_V3
                    } else {
                        &METHODS_V1
                    },
                },
                kind,
                db: ptr::null_mut(),
                wal: ptr::null_mut(),
                buf: Vec::new(),
                buf_off: 0,
                frontier: 0,
                commit_page_at: -1,
            },
        );
        if kind == Kind::Wal && rc == ffi::SQLITE_OK && !name.is_null() {
            let db = ffi::sqlite3_database_file_object(name).cast::<File>();
            if !db.is_null() && is_ours(db.cast()) && (*db).kind == Kind::Main {
                (*db).wal = p.cast();
                (*p.cast::<File>()).db = db;
            }
        }
        rc
    }
}

unsafe fn is_ours(p: *mut ffi::sqlite3_file) -> bool {
    // SAFETY: `p` is a valid file object.
    let m = unsafe { (*p).pMethods };
    ptr::eq(m, &METHODS_V3) || ptr::eq(m, &METHODS_V1)
}

const fn methods(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(x_close),
        xRead: Some(x_read),
        xWrite: Some(x_write),
        xTruncate: Some(x_truncate),
        xSync: Some(x_sync),
        xFileSize: Some(x_file_size),
        xLock: Some(x_lock),
        xUnlock: Some(x_unlock),
        xCheckReservedLock: Some(x_check_reserved_lock),
        xFileControl: Some(x_file_control),
        xSectorSize: Some(x_sector_size),
        xDeviceCharacteristics: Some(x_device_characteristics),
        xShmMap: if version >= 2 { Some(x_shm_map) } else { None },
        xShmLock: if version >= 2 { Some(x_shm_lock) } else { None },
        xShmBarrier: if version >= 2 {
            Some(x_shm_barrier)
        } else {
            None
        },
        xShmUnmap: if version >= 2 {
            Some(x_shm_unmap)
        } else {
            None
        },
        xFetch: if version >= 3 { Some(x_fetch) } else { None },
        xUnfetch: if version >= 3 { Some(x_unfetch) } else { None },
    }
}

static METHODS_V3: ffi::sqlite3_io_methods = methods(3);
static METHODS_V1: ffi::sqlite3_io_methods = methods(1);

/// Calls the default VFS's method `$m` of file `$p` with the remaining arguments, or returns
/// `$missing` if it has none.
macro_rules! forward {
    ($p:expr, $m:ident, $missing:expr $(, $arg:expr)*) => {{
        let rp = real($p);
        match (*(*rp).pMethods).$m {
            Some(f) => f(rp $(, $arg)*),
            None => $missing,
        }
    }};
}

/// `forward!` after writing the WAL's buffered bytes, for calls that look at the file; a
/// failed write is that call's error.
macro_rules! flush_then_forward {
    ($p:expr, $m:ident, $missing:expr $(, $arg:expr)*) => {{
        let rc = flush_wal($p);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        forward!($p, $m, $missing $(, $arg)*)
    }};
}

/// Writes the buffered bytes of WAL file `f`, if any, in pieces of at most [`WRITE_MAX`]
/// bytes. The buffer is emptied even on failure: the error is reported to SQLite, which then
/// treats those writes as failed.
unsafe fn flush(f: *mut File) -> c_int {
    // SAFETY: `f` is one of our open file objects, used by one thread at a time.
    unsafe {
        if (*f).buf.is_empty() {
            return ffi::SQLITE_OK;
        }
        let mut buf = std::mem::take(&mut (*f).buf);
        let mut rc = ffi::SQLITE_OK;
        let mut off = (*f).buf_off;
        for piece in buf.chunks(WRITE_MAX) {
            rc = forward!(
                f.cast(),
                xWrite,
                ffi::SQLITE_IOERR_WRITE,
                piece.as_ptr().cast::<c_void>(),
                piece.len() as c_int,
                off
            );
            if rc != ffi::SQLITE_OK {
                break;
            }
            off += piece.len() as i64;
        }
        buf.clear();
        (*f).buf = buf;
        rc
    }
}

/// Flushes `p` if it is a WAL file; `SQLITE_OK` for other files.
unsafe fn flush_wal(p: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `p` is one of our open file objects.
    unsafe {
        let f = p.cast::<File>();
        if (*f).kind == Kind::Wal {
            flush(f)
        } else {
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn x_close(p: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file object it opened once, and uses it no more.
    unsafe {
        let f = p.cast::<File>();
        let flushed = flush_wal(p);
        if !(*f).db.is_null() {
            (*(*f).db).wal = ptr::null_mut();
        }
        if !(*f).wal.is_null() {
            (*(*f).wal).db = ptr::null_mut();
        }
        let rc = forward!(p, xClose, ffi::SQLITE_OK);
        ptr::drop_in_place(f);
        (*p).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            rc
        }
    }
}

unsafe extern "C" fn x_read(
    p: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { flush_then_forward!(p, xRead, ffi::SQLITE_IOERR_READ, buf, amt, off) }
}

unsafe extern "C" fn x_write(
    p: *mut ffi::sqlite3_file,
    data: *const c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `data` holds `amt` bytes (SQLite's contract); `p` is one of our files.
    unsafe {
        let f = p.cast::<File>();
        if (*f).kind != Kind::Wal || amt <= 0 || off < 0 {
            return forward!(p, xWrite, ffi::SQLITE_IOERR_WRITE, data, amt, off);
        }
        if off == 0 {
            // The WAL header: the log starts over, everything after it is new.
            (*f).frontier = 0;
        }
        let end = off + i64::from(amt);
        let file = &mut *f;
        if off < file.frontier {
            // A rewrite of bytes written before: keep it in order with everything else.
            let rc = flush(f);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            (*f).commit_page_at = -1;
            (*f).frontier = (*f).frontier.max(end);
            return forward!(p, xWrite, ffi::SQLITE_IOERR_WRITE, data, amt, off);
        }
        if !file.buf.is_empty() && off != file.buf_off + file.buf.len() as i64 {
            let rc = flush(f);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let file = &mut *f;
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amt as usize);
        let commit_page = file.commit_page_at == off;
        // A frame header whose "database size after commit" field is set ends a transaction.
        file.commit_page_at = if amt == FRAME_HEADER && bytes[4..8] != [0; 4] {
            end
        } else {
            -1
        };
        if file.buf.is_empty() {
            file.buf_off = off;
        }
        file.buf.extend_from_slice(bytes);
        file.frontier = file.frontier.max(end);
        if commit_page || file.buf.len() >= FLUSH_AT {
            return flush(f);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_truncate(p: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { flush_then_forward!(p, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size) }
}

unsafe extern "C" fn x_sync(p: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { flush_then_forward!(p, xSync, ffi::SQLITE_IOERR_FSYNC, flags) }
}

unsafe extern "C" fn x_file_size(
    p: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { flush_then_forward!(p, xFileSize, ffi::SQLITE_IOERR_FSTAT, size) }
}

unsafe extern "C" fn x_lock(p: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { forward!(p, xLock, ffi::SQLITE_IOERR_LOCK, level) }
}

unsafe extern "C" fn x_unlock(p: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { forward!(p, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level) }
}

unsafe extern "C" fn x_check_reserved_lock(p: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe {
        forward!(
            p,
            xCheckReservedLock,
            ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
            out
        )
    }
}

unsafe extern "C" fn x_file_control(
    p: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { flush_then_forward!(p, xFileControl, ffi::SQLITE_NOTFOUND, op, arg) }
}

unsafe extern "C" fn x_sector_size(p: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { forward!(p, xSectorSize, 4096) }
}

unsafe extern "C" fn x_device_characteristics(p: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { forward!(p, xDeviceCharacteristics, 0) }
}

unsafe extern "C" fn x_shm_map(
    p: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe {
        forward!(
            p,
            xShmMap,
            ffi::SQLITE_IOERR_SHMMAP,
            page,
            size,
            extend,
            out
        )
    }
}

unsafe extern "C" fn x_shm_lock(
    p: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: `p` is our database file; its `wal` link is cleared when the WAL closes.
    unsafe {
        let f = p.cast::<File>();
        if flags & ffi::SQLITE_SHM_UNLOCK != 0
            && offset == WAL_WRITE_LOCK
            && (*f).kind == Kind::Main
            && !(*f).wal.is_null()
        {
            // Frames still buffered here belong to a transaction that did not commit (a commit
            // flushes). Without the shim they would already be in the file, beyond the last
            // commit; written later, after another connection has appended there, they would
            // destroy its frames. So they are written now, while this connection still owns
            // the end of the log. A failure only loses frames nobody will read.
            let _ = flush((*f).wal);
        }
        forward!(p, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
    }
}

unsafe extern "C" fn x_shm_barrier(p: *mut ffi::sqlite3_file) {
    // SAFETY: `p` is our database file; its `wal` link is cleared when the WAL closes.
    unsafe {
        let f = p.cast::<File>();
        if (*f).kind == Kind::Main && !(*f).wal.is_null() {
            let rc = flush((*f).wal);
            if rc != ffi::SQLITE_OK {
                // Publishing the header next would point readers at frames that are not in
                // the file; there is no way to report the error from here.
                eprintln!(
                    "flatmachines: writing SQLite WAL frames failed (code {rc}); aborting \
                     before the commit is published"
                );
                std::process::abort();
            }
        }
        forward!(p, xShmBarrier, ())
    }
}

unsafe extern "C" fn x_shm_unmap(p: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { forward!(p, xShmUnmap, ffi::SQLITE_OK, delete) }
}

unsafe extern "C" fn x_fetch(
    p: *mut ffi::sqlite3_file,
    off: ffi::sqlite3_int64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { forward!(p, xFetch, ffi::SQLITE_OK, off, amt, out) }
}

unsafe extern "C" fn x_unfetch(
    p: *mut ffi::sqlite3_file,
    off: ffi::sqlite3_int64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: forwarded with SQLite's own arguments.
    unsafe { forward!(p, xUnfetch, ffi::SQLITE_OK, off, page) }
}
