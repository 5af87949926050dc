"""Docker's meaning for inputs pydock used to treat its own way, checked through the docker SDK against
`pydock serve`: an image named by its `sha256:` id, an Env entry without `=` (unsets the variable), a
numeric user the image's passwd does not list (runs as that uid, gid 0)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.lxc


def test_sha256_id_bare_env_and_numeric_user(server):
    r = server.sdk("""
import io
client.images.pull('busybox', tag='latest')  # the built-in image, built on first use
image, _ = client.images.build(fileobj=io.BytesIO(b'FROM busybox\\nENV FOO=from-image KEEP=kept\\n'), rm=True)
out = client.containers.run(image.id, "sh -c 'echo ${FOO-unset} $KEEP $X; id -u; id -g'", user='4242',
                            environment=['FOO', 'X=1'], remove=True, network_mode='none')
c = client.containers.create(image.id, 'true', environment=['FOO'], network_mode='none')
env = c.attrs['Config']['Env']
c.remove()
image.remove()
result = [image.id.startswith('sha256:'), out.decode(), 'FOO' in env, 'KEEP=kept' in env]
""")
    assert r == [True, "unset kept 1\n4242\n0\n", True, True]
