import { ApiError } from './api.js';
import { isoUploadName } from './iso-name.js';

/** An installer ISO uploaded to the daemon (GET /v1/isos), with the OS identified from it. */
export interface IsoFile {
  name: string;
  path: string;
  size: number;
  os?: { shortId: string; name: string };
  problem?: string;
}

/** The content type the daemon takes an ISO upload with. */
const ISO_TYPE = 'application/x-iso9660-image';

/**
 * PUT /v1/isos/NAME with the file as the body: XMLHttpRequest, because fetch cannot report upload
 * progress. The file streams from disk; the page never reads it whole.
 */
export function uploadIso(file: File, onProgress: (percent: number) => void): Promise<IsoFile> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `/v1/isos/${encodeURIComponent(isoUploadName(file.name))}`);
    xhr.setRequestHeader('content-type', ISO_TYPE);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(Math.floor((e.loaded / e.total) * 100));
    };
    xhr.onload = () => {
      const parsed = (xhr.responseText ? JSON.parse(xhr.responseText) : undefined) as
        (IsoFile & { error?: { message?: string } }) | undefined;
      if (xhr.status >= 200 && xhr.status < 300) resolve(parsed!);
      else reject(new ApiError(parsed?.error?.message ?? `phyllomed answered ${xhr.status}`, xhr.status));
    };
    xhr.onerror = () => reject(new Error('the upload was cut off: try again'));
    xhr.send(file);
  });
}
