"""The comms/ protocol: messages, status files, the board, the idea queue, standups, quarantine.

Everything is a plain file under `<home>/comms/`, written to a temporary name in the same folder and then linked
or renamed into place, so a reader never sees half a file. Files that cannot be parsed are moved to
`comms/quarantine/` with the reason next to them, never deleted.
"""

from __future__ import annotations

from autoorg.comms.board import (
    BOARD_SECTIONS,
    BoardPost,
    board_path,
    board_posts,
    post_board,
    read_board,
    update_board,
)
from autoorg.comms.files import (
    QUARANTINE_AFTER_S,
    locked,
    parse_front_matter,
    quarantine,
    render_front_matter,
    replace_state_file,
)
from autoorg.comms.ideas import (
    IDEA_STATES,
    Idea,
    add_idea,
    add_idea_unless,
    claim_idea,
    finish_idea,
    ideas_dir,
    list_ideas,
)
from autoorg.comms.messages import (
    KINDS,
    MAX_BODY_BYTES,
    Message,
    inbox_dir,
    load_messages,
    mark_read,
    parse_message,
    read_inbox,
    send_message,
    unread_files,
)
from autoorg.comms.roster import (
    NAME_RE,
    SYSTEM_SENDERS,
    Roster,
    check_name,
    human_or_agent,
    known_agent,
    resolve_recipients,
    roster,
)
from autoorg.comms.standups import standup_notes_since, standup_path, write_standup
from autoorg.comms.status import (
    HELD_STATES,
    STATES,
    hold,
    not_running_reason,
    read_status,
    report_status,
    status_path,
    swap_status,
    unhold,
    write_status,
)

__all__ = ['BOARD_SECTIONS', 'BoardPost', 'HELD_STATES', 'IDEA_STATES', 'Idea', 'KINDS', 'MAX_BODY_BYTES', 'Message', 'NAME_RE', 'QUARANTINE_AFTER_S', 'Roster', 'STATES', 'SYSTEM_SENDERS', 'add_idea', 'add_idea_unless', 'board_path', 'board_posts', 'check_name', 'claim_idea', 'finish_idea', 'hold', 'human_or_agent', 'ideas_dir', 'inbox_dir', 'known_agent', 'list_ideas', 'load_messages', 'locked', 'mark_read', 'not_running_reason', 'parse_front_matter', 'parse_message', 'post_board', 'quarantine', 'read_board', 'read_inbox', 'read_status', 'render_front_matter', 'replace_state_file', 'report_status', 'resolve_recipients', 'roster', 'send_message', 'standup_notes_since', 'standup_path', 'status_path', 'swap_status', 'unhold', 'unread_files', 'update_board', 'write_standup', 'write_status']
