"""100 MiB through edgegate in both directions, checked by SHA-256, without edgegate holding the
body in memory."""
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
import payload  # noqa: E402
from stack import StackTestCase  # noqa: E402

SIZE = 100 * 1024 * 1024
MAX_TIME = 180
# Peak resident memory edgegate may reach: far below the 100 MiB body it must stream.
MAX_RSS_MIB = int(os.environ.get("EDGEGATE_TEST_MAX_RSS_MIB", "64"))


class LargeBodiesTest(StackTestCase):
    # A 100 MiB upload takes longer than the default test timeout of 2 s before the app answers.
    edgegate_env = {"UPSTREAM_RESPONSE_TIMEOUT_SEC": 120}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="edgegate-large-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.file = os.path.join(cls.tmp, "upload.bin")
        cls.file_sha = payload.write_file(cls.file, SIZE, "upload")

    def assert_streamed(self):
        """edgegate's peak RSS stayed well below the body size."""
        pid = self.eg.pid
        with open(f"/proc/{pid}/maps") as f:
            if "libasan" in f.read():
                return  # ASan's allocator quarantine keeps freed buffers resident
        with open(f"/proc/{pid}/status") as f:
            hwm_kib = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
        self.assertLess(hwm_kib / 1024, MAX_RSS_MIB,
                        f"edgegate's peak RSS is {hwm_kib // 1024} MiB while proxying "
                        f"{SIZE >> 20} MiB (EDGEGATE_TEST_MAX_RSS_MIB raises the limit)")

    def upload(self, *args, stdin=None):
        r = self.preview("/upload", *args, stdin=stdin, timeout=MAX_TIME)
        self.assertEqual((r.status, r.exit_code), (200, 0), r)
        self.assertEqual(r.json(), {"bytes": SIZE, "sha256": self.file_sha}, r)
        self.assert_streamed()

    def test_upload_with_content_length(self):
        # -T streams the file with a Content-Length (and curl's own Expect: 100-continue).
        self.upload("-T", self.file, "-X", "POST")

    def test_upload_chunked(self):
        with open(self.file, "rb") as f:
            self.upload("-T", "-", "-X", "POST", "-H", "Transfer-Encoding: chunked", stdin=f)

    def download(self, query):
        out = os.path.join(self.tmp, "download.bin")
        r = self.preview(f"/download?size={SIZE}&seed=dl{query}", output=out, timeout=MAX_TIME)
        try:
            self.assertEqual((r.status, r.exit_code), (200, 0), r)
            self.assertEqual(os.path.getsize(out), SIZE, r)
            self.assertEqual(payload.file_sha256(out), payload.sha256_hex(SIZE, "dl"))
        finally:
            os.unlink(out)
        self.assert_streamed()

    def test_download_with_content_length(self):
        self.download("")

    def test_download_chunked(self):
        self.download("&chunked=1")


if __name__ == "__main__":
    unittest.main()
