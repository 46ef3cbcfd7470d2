// Reply text as it streams, put together in order whatever order it arrives in.
//
// Each run.delta says where its text starts in the run's streamed text (`offset`, in
// characters as the gateway counts them: code points), and chat.history's `partial` holds
// the reply so far, up to character `end`. A page that reads the history mid-reply (a
// reload, a session opened again) so shows the whole reply, and text it receives twice (a
// delta the history already held) once. No DOM here: app.js shows what this returns.
"use strict";

const PIECES_HELD = 2000;  // pieces held while text before them is missing (a bound)

// code points, as the gateway counts characters
function characters(text) { return [...text]; }

// A reply known from its start: `text` runs from character `end - length` to `end`;
// `pieces` came from further on, after a gap, and wait for what goes before them.
function newReply(text = "", end = 0) { return {text, end, pieces: []}; }

// Take in `text` starting at character `offset`; return what it adds to the reply's end.
function takePiece(reply, offset, text) {
  reply.pieces.push({offset, text});
  if (reply.pieces.length > PIECES_HELD) reply.pieces.shift();
  return settle(reply);
}

// The reply so far as the history gives it, with what this page already had: whichever
// knows more, the two put together.
function withPartial(reply, partial) {
  const merged = newReply(partial.text, partial.end);
  if (reply) {
    merged.pieces = reply.pieces;
    const start = reply.end - characters(reply.text).length;
    if (reply.text) merged.pieces.push({offset: start, text: reply.text});
  }
  settle(merged);
  return merged;
}

// Add every held piece that now follows on; return the text added.
function settle(reply) {
  let added = "";
  for (let i = 0; i < reply.pieces.length;) {
    const piece = reply.pieces[i];
    if (piece.offset > reply.end) { i++; continue; }  // text before it is still missing
    reply.pieces.splice(i, 1);
    const letters = characters(piece.text);
    const fresh = letters.slice(reply.end - piece.offset).join("");
    if (fresh) {
      reply.text += fresh;
      added += fresh;
      reply.end = piece.offset + letters.length;
    }
    i = 0;  // a piece passed over may follow on now
  }
  return added;
}

// A reply still missing text that came before some it holds.
function hasGap(reply) { return reply.pieces.length > 0; }
