"""The footer of keys, restyled in place when only which keys are active changes."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class KeyFooter(Footer):
    """Textual's :class:`Footer`, but when the same keys are shown and only some turn active
    or inactive (a story starts or ends), it dims or lights them in place.

    Textual's footer rebuilds all its keys at every change, and the new widgets lay out the
    whole screen: about 30 ms on 2 cores at the very moment a story's first token is being
    written beside it. Any other change (other keys, remapped keys, a new focus with other
    bindings) still rebuilds it.
    """

    def bindings_changed(self, screen: Screen) -> None:
        """The screen's active bindings changed: restyle the keys if that is all."""
        if not (self._bindings_ready and self.is_attached and screen is self.screen
                and screen.app.app_focus and self._restyle()):
            super().bindings_changed(screen)

    def _restyle(self) -> bool:
        """Set each shown key's active state; ``False`` (nothing done) if the keys that should
        be shown are not exactly those shown."""
        shown = list(self.children)
        if not all(isinstance(key, FooterKey) for key in shown):
            return False  # grouped keys or labels: left to the full rebuild
        bindings = self.screen.active_bindings
        wanted: dict[str, tuple[str, str, str, str, bool]] = {}
        for _, binding, enabled, tooltip in bindings.values():
            if binding.show and binding.action not in wanted:  # the first key of an action
                wanted[binding.action] = (binding.key, self.app.get_key_display(binding),
                                          binding.description, tooltip, enabled)
        keys = [key for key in shown if not key.has_class("-command-palette")]
        palette = [key for key in shown if key.has_class("-command-palette")]
        if len(keys) != len(wanted) or len(palette) > 1:
            return False
        states = []
        for key, (action, (name, display, description, tooltip, enabled)) in zip(
                keys, wanted.items(), strict=True):
            if (key.action, key.key, key.key_display, key.description, key.tooltip or "") != \
                    (action, name, display, description, tooltip or ""):
                return False
            states.append(enabled)
        if palette:
            palette_binding = bindings.get(self.app.COMMAND_PALETTE_BINDING)
            if palette_binding is None:
                return False
            keys += palette
            states.append(palette_binding.enabled)
        for key, enabled in zip(keys, states, strict=True):
            if key._disabled == enabled:
                key._disabled = not enabled
                key.set_class(not enabled, "-disabled")
        return True
