"""A conversation as a tree of turns: branches and versions, from (id, parent id, role) alone.

Each message follows its parent. Messages with the same parent and role are versions of one
turn, in the order they were made (ids grow). The branch on screen runs from a root to a leaf
through the newest message, or through a given one, taking the latest version below it.
"""

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Version:
    index: int  # 1-based, oldest first
    ids: tuple[int, ...]

    def as_json(self) -> dict:
        return {"index": self.index, "count": len(self.ids), "ids": list(self.ids)}


@dataclass
class Tree:
    parent: dict[int, int | None] = field(default_factory=dict)
    role: dict[int, str] = field(default_factory=dict)
    children: dict[int | None, list[int]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, rows) -> "Tree":
        """From (id, parent_id, role) rows in id order."""
        tree = cls()
        for pk, parent_id, role in sorted(rows):
            tree.parent[pk], tree.role[pk] = parent_id, role
            tree.children[parent_id].append(pk)
        return tree

    def branch(self, through: int | None = None) -> list[int]:
        """Ids from the root to a leaf, through `through`; by default through the newest message
        (what was done last stays on screen: a regenerated answer, an edit, a turn on an older
        branch). Below `through`, the latest version of each turn."""
        if through is None:
            if not self.parent:
                return []
            through = max(self.parent)
        path, node = [*self.ancestors(through), through], through
        while kids := self.children.get(node):
            node = kids[-1]
            path.append(node)
        return path

    def ancestors(self, pk: int) -> list[int]:
        """The messages `pk` follows, root first."""
        up, node = [], self.parent[pk]
        while node is not None:
            up.append(node)
            node = self.parent[node]
        return up[::-1]

    def version(self, pk: int) -> Version:
        siblings = tuple(s for s in self.children[self.parent[pk]] if self.role[s] == self.role[pk])
        return Version(siblings.index(pk) + 1, siblings)

    def is_leaf(self, pk: int) -> bool:
        return not self.children.get(pk)
