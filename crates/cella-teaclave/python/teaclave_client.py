"""A Teaclave SDK-style client for Cella's Teaclave API (crates/cella-teaclave).

It follows the call sequences of Teaclave's Python SDK (`sdk/python/teaclave.py`) and of
its `examples/python/builtin_echo.py`, over grpclib (the SDK's gRPC library) with the SDK's
TLS settings in simulation mode (`SGX_MODE=SW`: an unverified context, ALPN h2), then the
refusals a Teaclave client sees. It prints one `ok …` line per check and exits non-zero,
naming the check, on the first one that fails.

Usage: teaclave_client.py STUBS_DIR AUTH_ADDR FRONTEND_ADDR ADMIN_PASSWORD_FILE
STUBS_DIR holds the modules protoc generated from crates/cella-teaclave/proto with
--python_out and --grpclib_python_out.
"""

import asyncio
import json
import socket
import ssl
import sys

sys.path.insert(0, sys.argv[1])

from cryptography import x509  # noqa: E402
from grpclib.client import Channel  # noqa: E402
from grpclib.const import Status  # noqa: E402
from grpclib.exceptions import GRPCError  # noqa: E402

import teaclave_authentication_service_grpc as auth_grpc  # noqa: E402
import teaclave_authentication_service_pb2 as auth  # noqa: E402
import teaclave_common_pb2 as common  # noqa: E402
import teaclave_frontend_service_grpc as fe_grpc  # noqa: E402
import teaclave_frontend_service_pb2 as fe  # noqa: E402

REPORT_OID = "2.16.840.1.113730.1.13"


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print("ok", what.split(":")[0], flush=True)


def sdk_context():
    """The SDK's context: no certificate verification, TLS >= 1.2, ALPN h2."""
    ctx = ssl._create_unverified_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20")
    ctx.set_alpn_protocols(["h2"])
    return ctx


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def peer_certificate(host, port):
    """The server's certificate, as the SDK's __connect__ takes it before every call."""
    with socket.create_connection((host, port)) as raw:
        with sdk_context().wrap_socket(raw, server_hostname=host) as tls:
            check(tls.selected_alpn_protocol() == "h2", f"alpn: {tls.selected_alpn_protocol()}")
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


async def refused(call, code, text, what):
    try:
        await call
    except GRPCError as e:
        check(e.status == code and text in (e.message or ""), f"{what}: got {e.status} {e.message!r}")
        return e.message
    raise SystemExit(f"FAILED: {what}: the call succeeded")


async def login(host, port, user, password):
    async with Channel(host, port, ssl=sdk_context()) as ch:
        r = await auth_grpc.TeaclaveAuthenticationApiStub(ch).UserLogin(
            auth.UserLoginRequest(id=user, password=password))
        return {"id": user, "token": r.token}


async def result_of(stub, meta, task_id):
    """The SDK's get_task_result: sleep 1 s before each GetTask until Finished."""
    while True:
        await asyncio.sleep(1)
        t = await stub.GetTask(fe.GetTaskRequest(task_id=task_id), metadata=meta)
        if t.status == common.Finished:
            return t
        if t.status in (common.Canceled, common.Failed):
            raise SystemExit(f"FAILED: task ended {t.status}: {t.result.Err.reason}")


async def main():
    stubs, auth_addr, fe_addr, pw_file = sys.argv[1:5]
    (ah, ap), (fh, fp) = addr(auth_addr), addr(fe_addr)
    admin_pw = open(pw_file).read().strip()

    # The certificate the SDK sees (item 6): Teaclave's simulation-mode shape.
    for port in (ap, fp):
        cert = peer_certificate(ah, port)
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        issuer = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        check(cn == "CN=Teaclave" and issuer == "Teaclave", f"certificate names: {cn} {issuer}")
        check(len(cert.extensions) == 1, f"one extension: {cert.extensions}")
        # As the SDK reads it in hardware mode: json.loads(extensions[0].value.value).
        report = json.loads(cert.extensions[0].value.value)
        check(cert.extensions[0].oid.dotted_string == REPORT_OID
              and report == {"report": [], "signature": [], "certs": []},
              f"simulation report extension: {report}")

    # builtin_echo.py, step 1: log in on the authentication service, no metadata.
    admin = await login(ah, ap, "admin", admin_pw)
    check(admin["token"], "login: empty token")

    async with Channel(ah, ap, ssl=sdk_context()) as ch:
        a = auth_grpc.TeaclaveAuthenticationApiStub(ch)
        # The examples' PlatformAdmin registers its users.
        for user, role in [("user0", "DataOwner"), ("user1", "DataOwner"), ("fowner", "FunctionOwner")]:
            await a.UserRegister(auth.UserRegisterRequest(
                id=user, password="password", role=role, attribute=""), metadata=admin)
        await refused(a.UserRegister(auth.UserRegisterRequest(
            id="user0", password="password", role="DataOwner"), metadata=admin),
            Status.UNAUTHENTICATED, "user id exist", "register twice: user id exist")
        await refused(a.UserRegister(auth.UserRegisterRequest(
            id="user9", password="password", role=""), metadata=admin),
            Status.UNAUTHENTICATED, "invalid role", "the SDK's default role: invalid role")
        users = await a.ListUsers(auth.ListUsersRequest(id="admin"), metadata=admin)
        check({"admin", "user0", "user1", "fowner"} <= set(users.ids), f"list users: {users.ids}")
        # Refusals of the authentication service: all code 16, Teaclave's words.
        await refused(a.UserLogin(auth.UserLoginRequest(id="admin", password="wrong password")),
                      Status.UNAUTHENTICATED, "authentication failed", "wrong password")
        await refused(a.UserRegister(auth.UserRegisterRequest(id="x", password="password",
                                                             role="DataOwner")),
                      Status.UNAUTHENTICATED, "missing user id", "no metadata: missing user id")
        await refused(a.ListUsers(auth.ListUsersRequest(id="admin"),
                                  metadata={"id": "admin", "token": admin["token"] + "x"}),
                      Status.UNAUTHENTICATED, "authentication failed", "wrong token on auth")

    user0 = await login(ah, ap, "user0", "password")
    user1 = await login(ah, ap, "user1", "password")
    fowner = await login(ah, ap, "fowner", "password")

    async with Channel(fh, fp, ssl=sdk_context()) as ch:
        f = fe_grpc.TeaclaveFrontendStub(ch)
        # builtin_echo.py, steps 2-5, with its exact request fields.
        fid = (await f.RegisterFunction(fe.RegisterFunctionRequest(
            name="builtin-echo", description="Native Echo Function", executor_type="builtin",
            public=True, payload=b"",
            arguments=[fe.FunctionArgument(key="message", default_value="", allow_overwrite=True)],
            inputs=[], outputs=[], user_allowlist=[], usage_quota=-1), metadata=admin)).function_id
        check(fid.startswith("function-"), f"function id: {fid}")
        tid = (await f.CreateTask(fe.CreateTaskRequest(
            function_id=fid, function_arguments=json.dumps({"message": "Hello, Teaclave!"}),
            executor="builtin", inputs_ownership=[], outputs_ownership=[]), metadata=admin)).task_id
        check(tid.startswith("task-"), f"task id: {tid}")
        t = await f.GetTask(fe.GetTaskRequest(task_id=tid), metadata=admin)
        check(t.status == common.Created and t.participants == ["admin"],
              f"created: {t.status} {t.participants}")
        await f.InvokeTask(fe.InvokeTaskRequest(task_id=tid), metadata=admin)
        t = await result_of(f, admin, tid)
        check(t.result.Ok.return_value == b"Hello, Teaclave!", f"echo: {t.result.Ok.return_value!r}")
        check(t.function_arguments == '{"message":"Hello, Teaclave!"}',
              f"normalised arguments: {t.function_arguments}")
        stats = await f.GetFunctionUsageStats(fe.GetFunctionUsageStatsRequest(function_id=fid),
                                              metadata=admin)
        check(stats.function_quota == -1 and stats.current_usage == 1, f"usage: {stats}")

        # Refusals of the frontend: a wrong token, no metadata, another user's token.
        get = fe.GetTaskRequest(task_id=tid)
        await refused(f.GetTask(get, metadata={"id": "admin", "token": "v1.forged.token"}),
                      Status.UNAUTHENTICATED, "incorrent credential", "wrong token")
        await refused(f.GetTask(get), Status.UNAUTHENTICATED, "missing user id", "no metadata")
        await refused(f.GetTask(get, metadata={"id": "admin", "token": user0["token"]}),
                      Status.UNAUTHENTICATED, "incorrent credential", "another user's token")
        # A foreign user's task.
        await refused(f.GetTask(get, metadata=user1), Status.PERMISSION_DENIED,
                      "permission denied", "a foreign user's task")
        await refused(f.CancelTask(fe.CancelTaskRequest(task_id=tid), metadata=user1),
                      Status.PERMISSION_DENIED, "permission denied", "cancel a foreign task")
        # Teaclave's ACL: a function owner creates no task.
        await refused(f.CreateTask(fe.CreateTaskRequest(
            function_id=fid, function_arguments="{}", executor="builtin"), metadata=fowner),
            Status.PERMISSION_DENIED, "permission denied", "function owner creates a task")
        await refused(f.CreateTask(fe.CreateTaskRequest(
            function_id=fid, function_arguments="{}", executor="builtin"), metadata=user0),
            Status.INVALID_ARGUMENT, "invalid task", "arguments mismatch: invalid task")
        await refused(f.GetTask(fe.GetTaskRequest(task_id="task-123"), metadata=admin),
                      Status.INVALID_ARGUMENT, "invalid task id", "bad task id")

        # Approval by data owners: a private function shared with user0 makes its owner
        # (admin) a participant of user0's task; user1 is none.
        private = (await f.RegisterFunction(fe.RegisterFunctionRequest(
            name="builtin-echo", description="private echo", executor_type="builtin",
            public=False, arguments=[fe.FunctionArgument(key="message", allow_overwrite=True)],
            user_allowlist=["user0"], usage_quota=-1), metadata=admin)).function_id
        shared = (await f.CreateTask(fe.CreateTaskRequest(
            function_id=private, function_arguments=json.dumps({"message": "two parties"}),
            executor="builtin"), metadata=user0)).task_id
        await refused(f.ApproveTask(fe.ApproveTaskRequest(task_id=shared), metadata=user1),
                      Status.PERMISSION_DENIED, "permission denied", "approval by a non-owner")
        await f.ApproveTask(fe.ApproveTaskRequest(task_id=shared), metadata=user0)
        t = await f.GetTask(fe.GetTaskRequest(task_id=shared), metadata=user0)
        check(t.approved_users == ["user0"] and sorted(t.participants) == ["admin", "user0"],
              f"one of two approved: {t.approved_users} {t.participants}")
        await refused(f.InvokeTask(fe.InvokeTaskRequest(task_id=shared), metadata=user0),
                      Status.UNKNOWN, "failed to invoke task", "invoke before every approval")
        await refused(f.InvokeTask(fe.InvokeTaskRequest(task_id=shared), metadata=admin),
                      Status.PERMISSION_DENIED, "permission denied", "invoke by a non-creator")
        await f.ApproveTask(fe.ApproveTaskRequest(task_id=shared), metadata=admin)
        t = await f.GetTask(fe.GetTaskRequest(task_id=shared), metadata=user0)
        check(t.status == common.Approved, f"approved: {t.status}")
        await f.InvokeTask(fe.InvokeTaskRequest(task_id=shared), metadata=user0)
        t = await result_of(f, user0, shared)
        check(t.result.Ok.return_value == b"two parties", f"shared echo: {t.result.Ok.return_value!r}")

        # test_disable_function.py: a disabled function leaves the owner's list.
        before = await f.ListFunctions(fe.ListFunctionsRequest(user_id="admin"), metadata=admin)
        await f.DisableFunction(fe.DisableFunctionRequest(function_id=private), metadata=admin)
        after = await f.ListFunctions(fe.ListFunctionsRequest(user_id="admin"), metadata=admin)
        check(len(after.registered_functions) == len(before.registered_functions) - 1
              and private not in after.registered_functions, f"disable: {before} {after}")

        # A method of Teaclave's file model says what is missing.
        await refused(f.RegisterInputFile(fe.RegisterInputFileRequest(
            url="data:text/plain;base64,AA==", cmac=bytes(16),
            crypto_info=common.FileCryptoInfo(schema="raw")), metadata=user0),
            Status.UNIMPLEMENTED, "file model", "file model not served")
        # Cella's files through Teaclave's getters: ids of the wrong kind or unknown.
        await refused(f.GetInputFile(fe.GetInputFileRequest(
            data_id="output-00000000-0000-4000-8000-000000000000"), metadata=user0),
            Status.INVALID_ARGUMENT, "invalid data id", "input getter, output id")
        await refused(f.GetInputFile(fe.GetInputFileRequest(
            data_id="input-00000000-0000-4000-8000-000000000000"), metadata=user0),
            Status.INVALID_ARGUMENT, "invalid data id", "unknown input file")
    print("all checks passed")


asyncio.run(main())
