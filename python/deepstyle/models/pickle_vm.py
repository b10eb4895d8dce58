"""A bounded, restricted pickle interpreter for weights files.

Python's own unpickler cannot be bounded: a 500-byte pickle whose dict key is a tower of 60
tuples sharing their parts (each level ``(t, t)``) makes ``hash`` take 2**60 steps, BUILD can
overwrite any attribute of an object after it was validated, and nesting is limited only by the
C stack. This interpreter runs the opcodes itself (decoded by ``pickletools.genops``, which
builds nothing) and keeps every resource in hand:

* at most ``MAX_OBJECTS`` objects and ``MAX_DEPTH`` levels of nesting;
* dict keys are only ``str`` or ``int`` (so hashing is cheap), persistent ids are only flat
  tuples of scalars (checked by the caller), globals come only from the caller's ``find_class``;
* REDUCE only calls the callables ``find_class`` returned; BUILD is accepted only on an
  OrderedDict (torch stores a state dict's ``_metadata`` that way) and its state is dropped;
* a container cannot be changed once it is inside another one, so no cycle can be built;
* errors name object types, never format an object from the file.
"""

from __future__ import annotations

import collections
import pickletools

MAX_OBJECTS = 200_000  # a VGG19 state dict needs about 1,000
MAX_DEPTH = 32  # a wrapped state dict of tensors needs 6
MAX_STRING = 1 << 16  # the longest key, module or name a weights pickle can sensibly hold


class PickleRefused(ValueError):
    """The pickle is malformed or does something a weights file has no need to do."""


class _Mark:
    __slots__ = ()


_MARK = _Mark()
_CONTAINERS = (tuple, list, dict)


class _Machine:
    def __init__(self, find_class, persistent_load, allowed_callables):
        self.find_class = find_class
        self.persistent_load = persistent_load
        self.allowed_callables = allowed_callables
        self.stack = []
        self.memo = {}
        self.count = 0
        self.depth = {}  # id(container) -> nesting depth; containers kept alive by `self.alive`
        self.sealed = set()  # ids of containers already placed inside another object
        self.alive = []

    # --- bookkeeping ---

    def push(self, obj):
        self.count += 1
        if self.count > MAX_OBJECTS:
            raise PickleRefused(f"pickle builds more than {MAX_OBJECTS} objects")
        if isinstance(obj, _CONTAINERS) and id(obj) not in self.depth:
            self.depth[id(obj)] = 1
            self.alive.append(obj)
        self.stack.append(obj)

    def pop(self):
        if not self.stack or self.stack[-1] is _MARK:
            raise PickleRefused("pickle stack underflow")
        return self.stack.pop()

    def pop_mark(self):
        items = []
        while self.stack:
            item = self.stack.pop()
            if item is _MARK:
                items.reverse()
                return items
            items.append(item)
        raise PickleRefused("pickle has no MARK where one is needed")

    def adopt(self, parent, children):
        """Record that ``parent`` now holds ``children``: depth grows, children are sealed."""
        depth = self.depth.get(id(parent), 1)
        for child in children:
            if child is parent:
                raise PickleRefused("pickle puts a container inside itself")
            if isinstance(child, _CONTAINERS):
                self.sealed.add(id(child))
                depth = max(depth, self.depth.get(id(child), 1) + 1)
        if depth > MAX_DEPTH:
            raise PickleRefused(f"pickle nests objects more than {MAX_DEPTH} levels deep")
        self.depth[id(parent)] = depth

    def mutable(self, target, kind):
        if not isinstance(target, kind) or id(target) in self.sealed:
            raise PickleRefused(f"pickle modifies a {type(target).__name__} it may not modify")
        return target

    def new_tuple(self, items):
        result = tuple(items)
        self.adopt(result, result)
        self.push(result)

    # --- the opcodes ---

    def set_items(self, target, pairs):
        self.mutable(target, dict)
        for key, value in pairs:
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise PickleRefused(f"pickle uses a {type(key).__name__} as a dict key (only str and int are allowed)")
            target[key] = value
        self.adopt(target, [v for _, v in pairs])

    def reduce(self, func, args):
        if not isinstance(args, tuple):
            raise PickleRefused("pickle REDUCE arguments are not a tuple")
        if not any(func is allowed for allowed in self.allowed_callables):
            raise PickleRefused(f"pickle calls a {type(func).__name__}, which is not an allowed callable")
        self.sealed.update(id(a) for a in args if isinstance(a, _CONTAINERS))
        result = func(*args)
        self.push(result)

    def run(self, file):
        for opcode, arg, _ in pickletools.genops(file):
            name = opcode.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                if len(self.stack) != 1:
                    raise PickleRefused("pickle stops with a malformed stack")
                return self.stack[0]
            handler = _HANDLERS.get(name)
            if handler is None:
                raise PickleRefused(f"pickle opcode {name} is not used by weights files")
            handler(self, arg)
        raise PickleRefused("pickle ends without STOP")


def _memo_put(m, index):
    if not m.stack or m.stack[-1] is _MARK:
        raise PickleRefused("pickle stack underflow")
    m.memo[index] = m.stack[-1]


def _memo_get(m, index):
    if index not in m.memo:
        raise PickleRefused("pickle refers to a memo entry it never stored")
    m.push(m.memo[index])


def _string(m, value):
    if len(value) > MAX_STRING:
        raise PickleRefused(f"pickle holds a string of {len(value)} characters (at most {MAX_STRING} allowed)")
    m.push(value)


def _legacy_string(m, value):  # Python 2 str: torch.load decodes it as UTF-8
    _string(m, value.decode("utf-8", "replace") if isinstance(value, bytes) else value)


def _global(m, module, name):
    if not (isinstance(module, str) and isinstance(name, str)):
        raise PickleRefused("pickle names a global with something other than strings")
    m.push(m.find_class(module[:200], name[:200]))


def _global_text(m, arg):
    module, _, name = arg.partition(" ")
    _global(m, module, name)


def _stack_global(m, _):
    name = m.pop()
    _global(m, m.pop(), name)


def _append(m, _):
    value = m.pop()
    target = m.mutable(m.stack[-1] if m.stack else None, list)
    target.append(value)
    m.adopt(target, [value])


def _appends(m, _):
    items = m.pop_mark()
    target = m.mutable(m.stack[-1] if m.stack else None, list)
    target.extend(items)
    m.adopt(target, items)


def _setitem(m, _):
    value = m.pop()
    key = m.pop()
    m.set_items(m.stack[-1] if m.stack else None, [(key, value)])


def _setitems(m, _):
    items = m.pop_mark()
    if len(items) % 2:
        raise PickleRefused("pickle SETITEMS has an odd number of items")
    m.set_items(m.stack[-1] if m.stack else None, list(zip(items[::2], items[1::2])))


def _dict(m, _):
    items = m.pop_mark()
    if len(items) % 2:
        raise PickleRefused("pickle DICT has an odd number of items")
    target = {}
    m.push(target)
    m.set_items(target, list(zip(items[::2], items[1::2])))


def _list(m, _):
    items = m.pop_mark()
    m.push(items)
    m.adopt(items, items)


def _build(m, _):
    state = m.pop()
    target = m.stack[-1] if m.stack else None
    if not isinstance(target, collections.OrderedDict) or not isinstance(state, dict):
        raise PickleRefused(f"pickle BUILD on a {type(target).__name__} (only a state dict's metadata may be set)")


def _binpersid(m, _):
    pid = m.pop()
    if isinstance(pid, _CONTAINERS):
        m.sealed.add(id(pid))
    m.push(m.persistent_load(pid))


def _reduce(m, _):
    args = m.pop()
    m.reduce(m.pop(), args)


def _pop(m, _):
    m.pop()


def _pop_mark(m, _):
    m.pop_mark()


def _constant(value):
    return lambda m, _: m.push(value)


def _value(m, arg):
    m.push(arg)


def _tuple_of(count):
    def handler(m, _):
        items = [m.pop() for _ in range(count)][::-1]
        m.new_tuple(items)

    return handler


_HANDLERS = {
    "MARK": lambda m, _: m.stack.append(_MARK),
    "NONE": _constant(None),
    "NEWTRUE": _constant(True),
    "NEWFALSE": _constant(False),
    "EMPTY_TUPLE": _constant(()),
    "EMPTY_LIST": lambda m, _: m.push([]),
    "EMPTY_DICT": lambda m, _: m.push({}),
    "TUPLE": lambda m, _: m.new_tuple(m.pop_mark()),
    "TUPLE1": _tuple_of(1),
    "TUPLE2": _tuple_of(2),
    "TUPLE3": _tuple_of(3),
    "LIST": _list,
    "DICT": _dict,
    "APPEND": _append,
    "APPENDS": _appends,
    "SETITEM": _setitem,
    "SETITEMS": _setitems,
    "BUILD": _build,
    "REDUCE": _reduce,
    "GLOBAL": _global_text,
    "STACK_GLOBAL": _stack_global,
    "BINPERSID": _binpersid,
    "POP": _pop,
    "POP_MARK": _pop_mark,
    "PUT": _memo_put,
    "BINPUT": _memo_put,
    "LONG_BINPUT": _memo_put,
    "MEMOIZE": lambda m, _: _memo_put(m, len(m.memo)),
    "GET": _memo_get,
    "BINGET": _memo_get,
    "LONG_BINGET": _memo_get,
    "BINUNICODE": _string,
    "SHORT_BINUNICODE": _string,
    "BINUNICODE8": _string,
    "UNICODE": _string,
    "STRING": _legacy_string,
    "BINSTRING": _legacy_string,
    "SHORT_BINSTRING": _legacy_string,
    "BINBYTES": _string,
    "SHORT_BINBYTES": _string,
    "BINBYTES8": _string,
}
for _name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"):
    _HANDLERS[_name] = _value


def load(file, find_class, persistent_load, allowed_callables):
    """Run one pickle from ``file`` (positioned just after its STOP afterwards).

    ``find_class(module, name)`` resolves globals (raising to refuse), ``persistent_load(pid)``
    resolves persistent ids, and REDUCE may call only the objects in ``allowed_callables``.
    Raises PickleRefused on anything malformed or out of bounds; exceptions raised by the
    callbacks pass through."""
    return _Machine(find_class, persistent_load, allowed_callables).run(file)
