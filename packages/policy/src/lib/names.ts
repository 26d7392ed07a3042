/**
 * The grammar of the names users give templates and snapshots: 1-63 of a-z 0-9 and -, starting with a letter and
 * not ending with - (a DNS label's shape). Security meaning: such a name is safe as a path segment, a label or a
 * host label (no dot, slash, upper case or shell character), and never looks like an id (`tpl_…`, `snp-…`).
 */
export const LABEL_NAME = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
