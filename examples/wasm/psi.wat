;; psi.wat: two-party set intersection over newline-separated items.
;;
;; Reads /cella/inputs/input_a and /cella/inputs/input_b (each a list of items, one per
;; line), and writes the lines of input_a that also occur in input_b, in input_a's
;; order, each ending in a newline, to both /cella/outputs/output_a and
;; /cella/outputs/output_b; then prints how many lines matched to stdout (the log).
;; Items are compared byte for byte; empty lines are skipped; a line repeated in
;; input_a is repeated in the result. O(n*m): a demonstration, not a fast PSI (the
;; builtin `ordered_set_intersect` is that). On failure it says what failed on stderr
;; and exits with the WASI errno.
;;
;; Each party sees only its own copy of the result: Cella encrypts output_a for the
;; owner of output_a and output_b for the owner of output_b.
;;
;; Run it with the CLI (a payload may be WAT text like this file, or a binary module):
;;
;;   cella function register --name psi --executor wasm --public \
;;       --payload examples/wasm/psi.wat \
;;       --input input_a --input input_b --output output_a --output output_b
;;   cella task create --function <function-id> --input input_a=bank-a \
;;       --input input_b=bank-b --output output_a=bank-a --output output_b=bank-b
;;   each bank: cella task assign <task-id> --input input_a=<file-id> \
;;                  --output output_a=<file-id>   (input_b/output_b for bank-b)
;;              cella task approve <task-id>
;;   cella task invoke <task-id>
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
  ;; 48: bytes read, 256..: strings; from 65536 on, a bump heap: input_a, input_b, the
  ;; result.
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 256) "input_a")
  (data (i32.const 264) "input_b")
  (data (i32.const 272) "output_a")
  (data (i32.const 288) "output_b")
  (data (i32.const 304) "psi: cannot open an input\n")
  (data (i32.const 336) "psi: cannot read an input\n")
  (data (i32.const 368) "psi: cannot write an output\n")
  (data (i32.const 400) "psi: out of memory\n")

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

  (func $fail (param $msg i32) (param $len i32) (param $errno i32)
    (drop (call $write_all (i32.const 2) (local.get $msg) (local.get $len)))
    (call $proc_exit (local.get $errno)))

  ;; Grows memory until it holds $need bytes (or exits with ENOMEM, 48).
  (func $ensure (param $need i32)
    (local $have i32)
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (local.get $need) (local.get $have)) (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then (call $fail (i32.const 400) (i32.const 19) (i32.const 48)))))))

  ;; Reads the input file named [name, name+len) onto the heap: (pointer, length).
  (func $read_file (param $name i32) (param $name_len i32) (result i32 i32)
    (local $fd i32) (local $ptr i32) (local $len i32) (local $err i32)
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (local.get $name)
      (local.get $name_len) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0)
      (i32.const 32)))
    (if (local.get $err) (then (call $fail (i32.const 304) (i32.const 26) (local.get $err))))
    (local.set $fd (i32.load (i32.const 32)))
    (local.set $ptr (global.get $heap))
    (block $eof
      (loop $more
        (call $ensure
          (i32.add (i32.add (local.get $ptr) (local.get $len)) (i32.const 65536)))
        (i32.store (i32.const 40) (i32.add (local.get $ptr) (local.get $len)))
        (i32.store (i32.const 44) (i32.const 65536))
        (local.set $err
          (call $fd_read (local.get $fd) (i32.const 40) (i32.const 1) (i32.const 48)))
        (if (local.get $err)
          (then (call $fail (i32.const 336) (i32.const 26) (local.get $err))))
        (br_if $eof (i32.eqz (i32.load (i32.const 48))))
        (local.set $len (i32.add (local.get $len) (i32.load (i32.const 48))))
        (br $more)))
    (drop (call $fd_close (local.get $fd)))
    (global.set $heap (i32.add (local.get $ptr) (local.get $len)))
    (local.get $ptr)
    (local.get $len))

  ;; Creates (or truncates) the output file named [name, name+len) and writes data.
  (func $write_file (param $name i32) (param $name_len i32) (param $ptr i32) (param $len i32)
    (local $err i32) (local $fd i32)
    (local.set $err (call $path_open (i32.const 4) (i32.const 0) (local.get $name)
      (local.get $name_len) (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0)
      (i32.const 32)))
    (if (local.get $err) (then (call $fail (i32.const 368) (i32.const 28) (local.get $err))))
    (local.set $fd (i32.load (i32.const 32)))
    (local.set $err (call $write_all (local.get $fd) (local.get $ptr) (local.get $len)))
    (if (local.get $err) (then (call $fail (i32.const 368) (i32.const 28) (local.get $err))))
    (drop (call $fd_close (local.get $fd))))

  ;; The index of the first newline at or after $pos in [p, p+len), or len.
  (func $line_end (param $p i32) (param $len i32) (param $pos i32) (result i32)
    (block $found
      (loop $scan
        (br_if $found (i32.ge_u (local.get $pos) (local.get $len)))
        (br_if $found
          (i32.eq (i32.load8_u (i32.add (local.get $p) (local.get $pos))) (i32.const 10)))
        (local.set $pos (i32.add (local.get $pos) (i32.const 1)))
        (br $scan)))
    (local.get $pos))

  ;; Whether the $n bytes at $a and at $b are equal.
  (func $memeq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $differ
      (loop $cmp
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $cmp)))
    (i32.const 0))

  ;; Whether the line [lp, lp+ll) is one of the lines of [bp, bp+bl).
  (func $has_line (param $bp i32) (param $bl i32) (param $lp i32) (param $ll i32) (result i32)
    (local $pos i32) (local $e i32)
    (block $none
      (loop $next
        (br_if $none (i32.ge_u (local.get $pos) (local.get $bl)))
        (local.set $e (call $line_end (local.get $bp) (local.get $bl) (local.get $pos)))
        (if (i32.eq (i32.sub (local.get $e) (local.get $pos)) (local.get $ll))
          (then
            (if (call $memeq (i32.add (local.get $bp) (local.get $pos)) (local.get $lp)
                  (local.get $ll))
              (then (return (i32.const 1))))))
        (local.set $pos (i32.add (local.get $e) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Writes $n in decimal at $dst; returns the number of digits.
  (func $itoa (param $n i32) (param $dst i32) (result i32)
    (local $len i32) (local $t i32) (local $i i32)
    (local.set $t (local.get $n))
    (loop $count
      (local.set $len (i32.add (local.get $len) (i32.const 1)))
      (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
      (br_if $count (local.get $t)))
    (local.set $i (local.get $len))
    (loop $digit
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (i32.add (local.get $dst) (local.get $i))
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $i)))
    (local.get $len))

  (func (export "_start")
    (local $ap i32) (local $al i32) (local $bp i32) (local $bl i32)
    (local $out i32) (local $outlen i32) (local $pos i32) (local $e i32) (local $ll i32)
    (local $count i32) (local $n i32) (local $tail i32)
    (call $read_file (i32.const 256) (i32.const 7))
    (local.set $al)
    (local.set $ap)
    (call $read_file (i32.const 264) (i32.const 7))
    (local.set $bl)
    (local.set $bp)
    ;; The result is at most input_a plus a final newline; 32 more for the count.
    (local.set $out (global.get $heap))
    (call $ensure (i32.add (i32.add (local.get $out) (local.get $al)) (i32.const 32)))
    (block $done
      (loop $line
        (br_if $done (i32.ge_u (local.get $pos) (local.get $al)))
        (local.set $e (call $line_end (local.get $ap) (local.get $al) (local.get $pos)))
        (local.set $ll (i32.sub (local.get $e) (local.get $pos)))
        (if (local.get $ll)
          (then
            (if (call $has_line (local.get $bp) (local.get $bl)
                  (i32.add (local.get $ap) (local.get $pos)) (local.get $ll))
              (then
                (memory.copy (i32.add (local.get $out) (local.get $outlen))
                  (i32.add (local.get $ap) (local.get $pos)) (local.get $ll))
                (local.set $outlen (i32.add (local.get $outlen) (local.get $ll)))
                (i32.store8 (i32.add (local.get $out) (local.get $outlen)) (i32.const 10))
                (local.set $outlen (i32.add (local.get $outlen) (i32.const 1)))
                (local.set $count (i32.add (local.get $count) (i32.const 1)))))))
        (local.set $pos (i32.add (local.get $e) (i32.const 1)))
        (br $line)))
    (call $write_file (i32.const 272) (i32.const 8) (local.get $out) (local.get $outlen))
    (call $write_file (i32.const 288) (i32.const 8) (local.get $out) (local.get $outlen))
    ;; The count, then a newline, to stdout.
    (local.set $tail (i32.add (local.get $out) (local.get $outlen)))
    (local.set $n (call $itoa (local.get $count) (local.get $tail)))
    (i32.store8 (i32.add (local.get $tail) (local.get $n)) (i32.const 10))
    (drop (call $write_all (i32.const 1) (local.get $tail) (i32.add (local.get $n) (i32.const 1))))))
