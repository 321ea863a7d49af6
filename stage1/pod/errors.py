"""Bad input, as one line: the pod's two kinds of error (exit 254).

ManifestError names the document and the JSON path of what is wrong
(`pod: apps[1].app.exec: must be a non-empty list of strings`); PodError
is anything else about the pod (its directory, an image manifest that
cannot be read, a request that does not fit the pod); PodFileError, a
PodError, names a pod file's line and key.
"""


class ManifestError(ValueError):
    """One line: where in which document, and what is wrong."""

    def __init__(self, source, path, message):
        super().__init__(_one_line("%s: %s: %s" % (source, path, message) if path else
                                   "%s: %s" % (source, message)))


class PodError(ValueError):
    """A pod-level failure: one line, exit 254."""

    def __init__(self, message):
        super().__init__(_one_line(message))


def _one_line(text):
    """A message stays on its line, whatever a value or path it quotes holds."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class PodFileError(PodError):
    """A pod file (TOML or Procfile) that does not compile: one line naming
    the file, the line and the key (`stage1.toml:7: web.restart: ...`)."""
