"""user and group of an app, resolved as aci.md says: the image's own
/etc/passwd and /etc/group first, then a number, and a value starting
with `/` means the owner (or group) of that file inside the app's root."""
import os


class UserError(ValueError):
    pass


def _lookup(root, table, name):
    """(id, primary gid or None) of name in root's /etc/passwd or /etc/group."""
    try:
        with open(os.path.join(root, "etc", table), encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
                    gid = fields[3] if table == "passwd" and len(fields) > 3 else None
                    return int(fields[2]), int(gid) if gid and gid.isdigit() else None
    except OSError:
        pass
    return None


def resolve(value, root, table):
    """The numeric uid (table 'passwd') or gid ('group') for value."""
    if value.startswith("/"):
        try:
            st = os.stat(os.path.join(root, value.lstrip("/")))
        except OSError as err:
            raise UserError("%s: %s" % (value, err.strerror))
        return st.st_uid if table == "passwd" else st.st_gid
    found = _lookup(root, table, value)
    if found is not None:
        return found[0]
    if value.isdigit():
        return int(value)
    raise UserError("%r is neither in %s/etc/%s nor a number" % (value, root.rstrip("/"), table))
