"""user and group of an app, resolved as aci.md says: the image's own
/etc/passwd and /etc/group first, then a number, and a value starting
with `/` means the owner (or group) of that file inside the app's root."""
import os

from stage1.pod.manifest import digits


class UserError(ValueError):
    pass


_tables = {}


def _table(root, table):
    """{name: (id, primary gid or None)} of root's /etc/passwd or /etc/group.

    Read once and kept while the file's identity and size and mtime stay
    the same: a pod of 200 apps of one image reads it once, not 400 times
    (that was half of planning such a pod)."""
    path = os.path.join(root, "etc", table)
    try:
        st = os.stat(path)
    except OSError:
        return {}
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _tables.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    entries = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 3 and digits(fields[2]) and fields[0] not in entries:
                    gid = fields[3] if table == "passwd" and len(fields) > 3 else None
                    entries[fields[0]] = (int(fields[2]), int(gid) if gid and digits(gid)
                                          else None)
    except OSError:
        return {}
    _tables[path] = (key, entries)
    return entries


def _lookup(root, table, name):
    """(id, primary gid or None) of name in root's /etc/passwd or /etc/group."""
    return _table(root, table).get(name)


MAX_ID = 2 ** 32 - 2       # 2**32 - 1 is (uid_t) -1: "no change" to the kernel


def _checked(number, value, table):
    if number > MAX_ID:
        raise UserError("%r: a %s id must be at most %d" % (value, "user" if table == "passwd"
                                                          else "group", MAX_ID))
    return number


def primary_gid(value, root):
    """The primary gid of user `value` (a name, or a uid) in root's
    /etc/passwd, or None when it has no entry there."""
    table = _table(root, "passwd")
    if value in table:
        return table[value][1]
    if digits(value):
        for uid, gid in table.values():
            if uid == int(value):
                return gid
    return None


def resolve(value, root, table):
    """The numeric uid (table 'passwd') or gid ('group') for value."""
    if value.startswith("/"):
        try:
            st = os.stat(os.path.join(root, value.lstrip("/")))
        except OSError as err:
            raise UserError("%s: %s" % (value, err.strerror))
        return _checked(st.st_uid if table == "passwd" else st.st_gid, value, table)
    found = _lookup(root, table, value)
    if found is not None:
        return _checked(found[0], value, table)
    if digits(value):
        return _checked(int(value), value, table)
    raise UserError("%r is neither in %s/etc/%s nor a number" % (value, root.rstrip("/"), table))
