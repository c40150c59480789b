;; copy.wat: copies the input slot "input" to the output slot "output".
;;
;; Reads /cella/inputs/input (preopened directory fd 3, read-only) in 64 KiB chunks and
;; writes them to /cella/outputs/output (preopened directory fd 4), created or
;; truncated. On failure it says what failed on stderr and exits with the WASI errno
;; (for example "exit status 44" when the input is missing: 44 is ENOENT).
;;
;; Run it with the CLI (a payload may be WAT text like this file, or a binary module):
;;
;;   cella function register --name copy --executor wasm --public \
;;       --payload examples/wasm/copy.wat --input input --output output
;;   cella task create --function <function-id> --input input=<user> --output output=<user>
;;   cella task assign <task-id> --input input=<file-id> --output output=<file-id>
;;   cella task approve <task-id>; cella task invoke <task-id>
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close"
    (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))

  ;; 8: iovec for writes, 16: bytes written, 32: opened fd, 40: iovec for reads,
  ;; 48: bytes read, 256..: strings, 65536: the 64 KiB copy buffer.
  (memory (export "memory") 2)
  (data (i32.const 256) "input")
  (data (i32.const 272) "output")
  (data (i32.const 288) "copy: cannot open /cella/inputs/input\n")
  (data (i32.const 336) "copy: cannot open /cella/outputs/output\n")
  (data (i32.const 384) "copy: read or write failed\n")

  (func $write_all (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (local $err i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 8) (local.get $ptr))
        (i32.store (i32.const 12) (local.get $len))
        (local.set $err
          (call $fd_write (local.get $fd) (i32.const 8) (i32.const 1) (i32.const 16)))
        (if (local.get $err) (then (return (local.get $err))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 16))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 16))))
        (br $more)))
    (i32.const 0))

  ;; Says what failed on stderr and exits with the errno.
  (func $fail (param $msg i32) (param $len i32) (param $errno i32)
    (drop (call $write_all (i32.const 2) (local.get $msg) (local.get $len)))
    (call $proc_exit (local.get $errno)))

  (func (export "_start")
    (local $in i32) (local $out i32) (local $err i32) (local $n i32)
    ;; path_open(dirfd, dirflags, path, path_len, oflags, rights, inheriting, fdflags, &fd)
    ;; rights: FD_READ = 2; FD_WRITE = 64. oflags: CREAT (1) | TRUNC (8) = 9.
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 256) (i32.const 5)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32)))
    (if (local.get $err) (then (call $fail (i32.const 288) (i32.const 38) (local.get $err))))
    (local.set $in (i32.load (i32.const 32)))
    (local.set $err (call $path_open (i32.const 4) (i32.const 0) (i32.const 272) (i32.const 6)
      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 32)))
    (if (local.get $err) (then (call $fail (i32.const 336) (i32.const 40) (local.get $err))))
    (local.set $out (i32.load (i32.const 32)))
    (block $eof
      (loop $chunk
        (i32.store (i32.const 40) (i32.const 65536))
        (i32.store (i32.const 44) (i32.const 65536))
        (local.set $err (call $fd_read (local.get $in) (i32.const 40) (i32.const 1) (i32.const 48)))
        (if (local.get $err) (then (call $fail (i32.const 384) (i32.const 27) (local.get $err))))
        (local.set $n (i32.load (i32.const 48)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $err (call $write_all (local.get $out) (i32.const 65536) (local.get $n)))
        (if (local.get $err) (then (call $fail (i32.const 384) (i32.const 27) (local.get $err))))
        (br $chunk)))
    (drop (call $fd_close (local.get $in)))
    (drop (call $fd_close (local.get $out)))))
