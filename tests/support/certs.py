"""Test certificates made with the openssl command line: a CA and server certificates it signs,
for TLS tests against 127.0.0.1 under names like *.proxy.localhost."""
import os
import subprocess


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_ca(directory, name="edgegate test CA"):
    """Writes ca.key and ca.pem in `directory`; returns the path of ca.pem."""
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
         cwd=directory)
    return os.path.join(directory, "ca.pem")


def make_server_cert(directory, stem, names, key_type="ec", cn=None):
    """Writes {stem}.key and {stem}.pem (leaf then CA: the full chain), signed by the CA in
    `directory`, valid for DNS `names`. Returns (cert path, key path)."""
    key_args = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if key_type == "ec"
                else ["-newkey", "rsa:2048"])
    _run("req", "-new", *key_args, "-nodes", "-keyout", f"{stem}.key", "-out", f"{stem}.csr",
         "-subj", f"/CN={cn or names[0]}", cwd=directory)
    ext = os.path.join(directory, f"{stem}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n"
                "extendedKeyUsage=serverAuth\n")
    _run("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", f"{stem}.leaf", "-days", "2", "-extfile", ext, cwd=directory)
    with open(os.path.join(directory, f"{stem}.pem"), "wb") as out:
        for part in (f"{stem}.leaf", "ca.pem"):
            with open(os.path.join(directory, part), "rb") as f:
                out.write(f.read())
    return os.path.join(directory, f"{stem}.pem"), os.path.join(directory, f"{stem}.key")
