/**
 * ISO 8601 date and date-time text, as Segment libraries send `timestamp`, `sentAt` and
 * `originalTimestamp`: "2025-03-11T09:05:00.066Z", "2025-03-11T03:00:00-04:00",
 * "2025-03-11T09:45:12.000+00:00", or a nine-digit fraction from Engage.
 */
const ISO_8601 =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?)?$/;

const MS_PER_MINUTE = 60_000;

/** 400 Gregorian years, which repeat the calendar exactly (146,097 days). */
const MS_PER_400_YEARS = 146_097 * 86_400_000;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  if (month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)) return 29;
  return DAYS_IN_MONTH[month - 1];
}

/**
 * Parses ISO 8601 text into epoch milliseconds, or returns undefined when the text is
 * not a valid ISO 8601 date or date-time.
 *
 * Fractions beyond milliseconds are truncated. A date-time without an offset and a date
 * without a time are read as UTC.
 *
 * NOTE: Date.parse is not used because it accepts many forms that are not ISO 8601
 * ("March 11, 2025") and reads a date-time without an offset in the server's time zone.
 */
export function parseIsoTimestamp(text: string): number | undefined {
  const match = ISO_8601.exec(text);
  if (match === null) return undefined;

  const year = Number(match[1]);
  const month = Number(match[2]);
  const day = Number(match[3]);
  const hour = match[4] === undefined ? 0 : Number(match[4]);
  const minute = match[5] === undefined ? 0 : Number(match[5]);
  const second = match[6] === undefined ? 0 : Number(match[6]);
  const millisecond = match[7] === undefined ? 0 : Number(match[7].slice(0, 3).padEnd(3, "0"));

  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;

  let offsetMinutes = 0;
  if (match[9] !== undefined) {
    const offsetHours = Number(match[10]);
    const offsetRest = match[11] === undefined ? 0 : Number(match[11]);
    if (offsetHours > 23 || offsetRest > 59) return undefined;
    offsetMinutes = (offsetHours * 60 + offsetRest) * (match[9] === "-" ? -1 : 1);
  }

  // Date.UTC reads years 0 to 99 as 1900 to 1999, so those years are shifted by 400 years
  // and shifted back.
  const shifted = year < 100;
  let ms = Date.UTC(shifted ? year + 400 : year, month - 1, day, hour, minute, second, millisecond);
  if (shifted) ms -= MS_PER_400_YEARS;

  return ms - offsetMinutes * MS_PER_MINUTE;
}
