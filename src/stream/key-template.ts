/**
 * A stream's Redis key template, `items:{id}` or `t:{tenant}:{id}`: literal text and
 * `{column}` placeholders filled with the columns' text output. The placeholders must be
 * replica-identity (primary-key) columns, the only ones a DELETE or a key-changing UPDATE
 * sends, so every change names its key.
 */

export class KeyTemplateError extends Error {
  readonly code = 'STREAM_KEY_TEMPLATE';
}

type Part = { literal: string } | { column: string };

export class KeyTemplate {
  private readonly parts: Part[] = [];
  /** the columns named by placeholders, in order of first appearance */
  readonly columns: string[] = [];

  constructor(readonly text: string) {
    const re = /\{([A-Za-z_][A-Za-z0-9_$]*)\}/g;
    let last = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m.index > last) this.parts.push({ literal: text.slice(last, m.index) });
      this.parts.push({ column: m[1]! });
      if (!this.columns.includes(m[1]!)) this.columns.push(m[1]!);
      last = m.index + m[0].length;
    }
    if (last < text.length) this.parts.push({ literal: text.slice(last) });
    if (this.columns.length === 0) throw new KeyTemplateError(`key template '${text}' names no {column}`);
  }

  /** The key of a row; `value(column)` gives a column's text (null when NULL or absent). */
  render(value: (column: string) => string | null): string {
    let key = '';
    for (const p of this.parts) {
      if ('literal' in p) key += p.literal;
      else {
        const v = value(p.column);
        if (v === null) throw new KeyTemplateError(`key column '${p.column}' is NULL or missing`);
        key += v;
      }
    }
    return key;
  }

  /** Whether `key` has this template's shape (what a read of a stream-fed key is recognised by). */
  matches(key: string): boolean {
    this.regex ??= new RegExp(
      `^${this.parts.map((p) => ('literal' in p ? p.literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : '.+')).join('')}$`,
      's',
    );
    return this.regex.test(key);
  }

  private regex: RegExp | undefined;

  /**
   * A SCAN MATCH pattern for every key this template can produce (literals escaped, each
   * placeholder a `*`): what a TRUNCATE or a fresh copy removes.
   */
  pattern(): string {
    return this.parts
      .map((p) => ('literal' in p ? p.literal.replace(/[*?[\]\\]/g, (c) => `\\${c}`) : '*'))
      .join('');
  }
}
