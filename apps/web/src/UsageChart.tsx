/**
 * What a running app uses over the last hour: memory and CPU, one point per 10 s sample, each beside
 * its limit (a dashed line). Hand-drawn SVG: two polylines and a few labels need no chart library,
 * and the dashboard's bundle stays small.
 */
import type { RouterOutputs } from '@coderunner/api/client';
import { useQuery } from '@tanstack/react-query';
import { useTRPC } from './api';

type UsageSeries = RouterOutputs['deployments']['usage'];
type Figures = NonNullable<UsageSeries['now']>;

const HOUR_MS = 3_600_000;
const WIDTH = 600;
const HEIGHT = 120;
const PAD = { left: 56, right: 8, top: 8, bottom: 18 };

const mb = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MB`;
const percent = (cpus: number) => (cpus > 0 && cpus < 0.005 ? '<1%' : `${Math.round(cpus * 100)}%`);

/** "41 MB of 256 MB (peak 63 MB) · CPU 3% of 0.5": the figures of now. */
export function usageSummary(u: Figures): string {
  const memory = `${mb(u.memoryBytes)}${u.memoryLimitBytes === null ? '' : ` of ${mb(u.memoryLimitBytes)}`}${
    u.memoryPeakBytes === null ? '' : ` (peak ${mb(u.memoryPeakBytes)})`
  }`;
  const cpu =
    u.cpu === null ? 'CPU: measuring…' : `CPU ${percent(u.cpu)}${u.cpus === null ? '' : ` of ${u.cpus}`}`;
  return `Memory ${memory} · ${cpu}${u.memoryLimitBytes === null && u.cpus === null ? ' (no limits: unisolated)' : ''}`;
}

interface ChartProps {
  label: string;
  /** [time ms, value] pairs, oldest first. */
  points: [number, number][];
  limit: number | null;
  end: number;
  format: (v: number) => string;
  className: string;
}

function Chart({ label, points, limit, end, format, className }: ChartProps) {
  const start = end - HOUR_MS;
  const top = Math.max(limit ?? 0, ...points.map(([, v]) => v)) * 1.1 || 1;
  const x = (t: number) => PAD.left + ((t - start) / HOUR_MS) * (WIDTH - PAD.left - PAD.right);
  const y = (v: number) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const drawn = points.filter(([t]) => t >= start);
  const line = drawn.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  return (
    <figure className={`usage-chart ${className}`}>
      <figcaption>{label}</figcaption>
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-label={`${label} over the last hour${limit === null ? '' : `, limit ${format(limit)}`}`}
        data-points={drawn.length}
      >
        <line className="axis" x1={PAD.left} y1={y(0)} x2={WIDTH - PAD.right} y2={y(0)} />
        <text className="tick" x={PAD.left - 4} y={y(0)} textAnchor="end" dominantBaseline="middle">
          0
        </text>
        <text className="tick" x={PAD.left - 4} y={y(top / 1.1)} textAnchor="end" dominantBaseline="middle">
          {format(top / 1.1)}
        </text>
        <text className="tick" x={PAD.left} y={HEIGHT - 4}>
          1 h ago
        </text>
        <text className="tick" x={WIDTH - PAD.right} y={HEIGHT - 4} textAnchor="end">
          now
        </text>
        {limit !== null && (
          <line className="limit" x1={PAD.left} y1={y(limit)} x2={WIDTH - PAD.right} y2={y(limit)}>
            <title>{`limit ${format(limit)}`}</title>
          </line>
        )}
        {drawn.length > 1 && (
          <>
            <polygon
              className="area"
              points={`${x(drawn[0]![0]).toFixed(1)},${y(0)} ${line} ${x(drawn.at(-1)![0]).toFixed(1)},${y(0)}`}
            />
            <polyline className="series" points={line} />
          </>
        )}
        {drawn.length === 1 && (
          <circle className="series-dot" cx={x(drawn[0]![0])} cy={y(drawn[0]![1])} r={2.5} />
        )}
      </svg>
    </figure>
  );
}

/** The deployment page's usage card; refreshed every 10 s while the app runs. */
export function UsageCard({ id }: { id: string }) {
  const trpc = useTRPC();
  const usage = useQuery({ ...trpc.deployments.usage.queryOptions({ id }), refetchInterval: 10_000 });
  if (!usage.data) return null;
  const { now, points } = usage.data;
  const end = Math.max(Date.now(), ...points.map((p) => p.at.getTime()));
  return (
    <div className="card usage">
      <h2>Usage</h2>
      <p aria-live="polite">{now ? usageSummary(now) : 'Not known here.'}</p>
      {points.length === 0 ? (
        <p className="muted small">The first sample comes within 10 s of the app's start.</p>
      ) : (
        <>
          <Chart
            label="Memory"
            className="memory"
            points={points.map((p) => [p.at.getTime(), p.memoryBytes])}
            limit={now?.memoryLimitBytes ?? null}
            end={end}
            format={mb}
          />
          <Chart
            label="CPU"
            className="cpu"
            points={points.flatMap((p) =>
              p.cpu === null ? [] : [[p.at.getTime(), p.cpu] as [number, number]],
            )}
            limit={now?.cpus ?? null}
            end={end}
            format={(v) => `${Math.round(v * 100)}%`}
          />
        </>
      )}
    </div>
  );
}
