;; echo.wat: prints each argument of its task to stdout, one per line, and returns.
;;
;; Cella passes a task's arguments as argv: argv[0] is the function's name, then one
;; "--name=value" per argument, in name order (as LibOS programs get them). This module
;; writes argv[1..] to stdout, which becomes the task's log. It reads no input and
;; writes no output.
;;
;; Run it with the CLI (a payload may be WAT text like this file, or a binary module):
;;
;;   cella function register --name echo --executor wasm --public \
;;       --payload examples/wasm/echo.wat --arg message=hello
;;   cella task create --function <function-id> --arg message=hi
;;   cella task approve <task-id>; cella task invoke <task-id>
;;   cella task get <task-id>          # the log shows: --message=hi
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))

  ;; 0: argc, 4: size of the argument strings, 8: iovec {ptr, len}, 16: bytes written,
  ;; 1024: argv pointers, then the argument strings.
  (memory (export "memory") 1)

  ;; Writes all of [ptr, ptr+len) to fd; returns the WASI errno (0 on success).
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

  (func (export "_start")
    (local $argc i32) (local $buf i32) (local $end i32) (local $have i32)
    (local $start i32) (local $p i32)
    (if (call $args_sizes_get (i32.const 0) (i32.const 4))
      (then (call $proc_exit (i32.const 1))))
    (local.set $argc (i32.load (i32.const 0)))
    (local.set $buf (i32.add (i32.const 1024) (i32.shl (local.get $argc) (i32.const 2))))
    (local.set $end (i32.add (local.get $buf) (i32.load (i32.const 4))))
    ;; Grow memory to hold the pointers and strings.
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then (call $proc_exit (i32.const 2))))))
    (if (call $args_get (i32.const 1024) (local.get $buf))
      (then (call $proc_exit (i32.const 1))))
    ;; Nothing but the function name: nothing to print.
    (if (i32.le_u (local.get $argc) (i32.const 1)) (then (return)))
    ;; The strings are NUL-terminated and contiguous: from argv[1] to the end, turn
    ;; each NUL into a newline and write them all at once.
    (local.set $start (i32.load (i32.const 1028)))
    (local.set $p (local.get $start))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (if (i32.eqz (i32.load8_u (local.get $p)))
          (then (i32.store8 (local.get $p) (i32.const 10))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $scan)))
    (if (call $write_all (i32.const 1) (local.get $start)
          (i32.sub (local.get $end) (local.get $start)))
      (then (call $proc_exit (i32.const 1))))))
